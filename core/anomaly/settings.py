"""Anomaly cue thresholds (section `anomaly`).

Every threshold is a ratio or an angle, so it holds at any image size. Defaults come from adult
anatomy with a margin for 2D projection: a cue fires only where perspective alone cannot
explain the measurement. The user's own tags will later calibrate them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HandCueSettings(_Section):
    # A finger counts as straight when no joint bends more than this (2D); only straight fingers
    # show their true segment proportions, a curled one foreshortens arbitrarily.
    straight_max_bend_deg: float = Field(default=25.0, gt=0, le=90)
    # Straight finger phalanges run about 1 : 0.65 : 0.5 (proximal : middle : distal); a middle or
    # distal phalanx longer than the proximal one is drawn wrong, not foreshortened.
    middle_over_proximal_max: float = Field(default=1.15, gt=0)
    distal_over_proximal_max: float = Field(default=1.05, gt=0)
    # Thumb phalanges against its metacarpal (landmarks 1-2); normal about 0.6-0.95.
    thumb_phalanx_over_metacarpal_max: float = Field(default=1.35, gt=0)
    # Finger (MCP to tip) over palm length; real middle fingers are about 0.85 of the palm.
    finger_over_palm_max: float = Field(default=1.55, gt=0)
    # 3D flexion limits (MediaPipe z scaled like x). Anatomical maxima are about MCP 90,
    # PIP 110, DIP 90 degrees; past these the finger folds back on itself. A real photo's
    # clenched fingers (GAIC 342407) measure PIP 107-109.
    mcp_flex_max_deg: float = Field(default=115.0, gt=0, le=180)
    pip_flex_max_deg: float = Field(default=125.0, gt=0, le=180)
    dip_flex_max_deg: float = Field(default=105.0, gt=0, le=180)
    # Two adjacent extended fingers whose tips and DIPs coincide (distance / finger length)
    # are one drawn finger matched twice: the hand shows fewer (or fused) fingers.
    fused_finger_max_gap: float = Field(default=0.12, gt=0, le=1)
    # Palm scale (see hands.palm_scale) against the person's face box width. A real palm is
    # about 0.65 face widths; a hand held towards the camera may look twice that.
    palm_over_face_max: float = Field(default=1.45, gt=0)
    # Palm scale against the pose body scale (shoulder width); real about 0.27.
    palm_over_shoulder_max: float = Field(default=0.62, gt=0)
    # Hand wrist to matched pose wrist, in palm scales, beyond which the hand is not on the arm.
    wrist_offset_max_palms: float = Field(default=1.2, gt=0)
    # Angle between forearm (pose elbow->wrist) and hand (wrist->middle MCP) in 2D; a wrist
    # bends about 80 degrees at most, and projection rarely adds more than 40.
    wrist_bend_max_deg: float = Field(default=125.0, gt=0, le=180)
    # A hand whose landmarks fall outside the frame by more than this fraction is cut by the
    # frame; its geometry is extrapolated, so only size/placement cues run on it.
    max_outside_fraction: float = Field(default=0.2, ge=0, le=1)


class LimbCueSettings(_Section):
    """Limb cues work in 2D: BlazePose z is too noisy to measure lengths with (shoulders 4x too
    wide in depth on test images). Foreshortening only shortens, so "too long" cues are safe in
    2D and "too short" cues require the comparison segment to be in the image plane."""

    # Landmarks below this pose visibility are not measured.
    min_visibility: float = Field(default=0.7, ge=0, le=1)
    # People whose body scale is under this fraction of the image's longer side are not measured:
    # their landmarks are a few pixels apart and mix with neighbours.
    min_body_scale_frac: float = Field(default=0.1, ge=0, le=1)
    # Left/right segment length ratio (2D) beyond which one limb is wrong, counted only when the
    # longer one also exceeds its anatomical length by `overlong_min` (so foreshortening of the
    # shorter one cannot explain it).
    asymmetry_max: float = Field(default=1.7, gt=1)
    overlong_min: float = Field(default=1.2, gt=0)
    # Upper arm / forearm (2D) below this while the forearm is not foreshortened; real about 1.2.
    upper_over_forearm_min: float = Field(default=0.4, gt=0)
    # The forearm counts as unforeshortened at this fraction of its anatomical length.
    in_plane_min: float = Field(default=0.8, gt=0)
    # Interior elbow angle (2D) below this with both segments at full anatomical length (in the
    # image plane): soft tissue stops a real elbow at about 30 degrees. Oblique arms project to
    # much smaller 2D angles, hence the full-length condition and the low default.
    elbow_min_deg: float = Field(default=10.0, ge=0, le=180)
    # Knee bent against the direction of the toes (hyperextension) by more than this.
    knee_hyperextension_max_deg: float = Field(default=20.0, ge=0, le=90)
    # Foot (heel->toe, 2D) over shin (knee->ankle, 2D); real about 0.62.
    foot_over_shin_max: float = Field(default=0.95, gt=0)
    # Segments shorter than this many body scales are too foreshortened to judge.
    min_segment_over_scale: float = Field(default=0.25, ge=0)


class UncertainSettings(_Section):
    # A pose wrist at least this visible and inside the frame is a hand that should be detected.
    wrist_min_visibility: float = Field(default=0.75, ge=0, le=1)
    # The same for a person on whom no hand was found at all. In group images the pose model
    # rates most wrists 0.3-0.7 (seated people behind a table, hands on food): with 0.75 alone a
    # crowd with not one hand found came out clean (anatomy_dev sdXL pizza_05: 5 people, 0 hands).
    handless_wrist_min_visibility: float = Field(default=0.3, ge=0, le=1)
    # A blob of the subject mask (U2-Netp + the selfie person mask) at least this share of the
    # image that no pose and no face's body region reaches is a person nobody checked (1: off).
    unexplained_subject_min_fraction: float = Field(default=0.04, gt=0, le=1)
    # A detected hand belongs to the nearest pose wrist within this many forearm lengths.
    match_max_forearms: float = Field(default=1.0, gt=0)
    # Hands below this detector score are low confidence where a hand should be.
    hand_min_score: float = Field(default=0.6, ge=0, le=1)
    # The pose model places its own hand points (wrist, pinky, index, thumb). When their centre
    # and the hand model's palm centre disagree by more than this many palm scales, the two
    # models read the drawn hand differently and its landmarks cannot be trusted.
    pose_hand_disagreement_max: float = Field(default=0.6, gt=0)
    # The hand network's 3D (world) reading: mean proximal phalanx (MCP->PIP) of the four long
    # fingers over the palm length (wrist->middle MCP). Anatomically 0.35-0.5; the model reads
    # 0.16-0.40 on every other hand in the shared images (the real one included, also flipped,
    # rotated 30 degrees and rescaled 0.6-1.5x), 0.05-0.10 (once 0.13) where its 3D reading
    # collapsed into fingers springing from the knuckles. Below this, the 3D reading contradicts
    # the 2D one.
    world_proximal_over_palm_min: float = Field(default=0.12, gt=0, lt=1)
    # Angle between the palm normals of the image reading and the world reading. Both share the
    # camera's axes, so they agree within 2-60 degrees on the shared images' hands (also flipped,
    # rotated and rescaled), the real one included; the exceptions are generated: the two
    # collapsed readings (92-127) and a rugby-crowd hand once rotated or enlarged (106-130). Past
    # 90 they disagree on whether the palm or the back faces the camera: no tuning, the sign flips.
    heads_palm_normal_max_deg: float = Field(default=90.0, gt=0, le=180)
    # A hand whose (unpadded) box lies this much on a face box is in front of the face (eating,
    # touching the chin): occluded, so its plausible landmarks prove little. Measured on the
    # shared images: 0.15-0.33 for the hands of the burger scene, 0 for every other hand.
    hand_on_face_min: float = Field(default=0.1, ge=0, le=1)
    # A hand centre within this many palm lengths of the OTHER arm's forearm rests on or grips it
    # (crossed arms, folded hands). Measured: 1.33 for the crossed-arms portrait, 0.96 for a hand
    # on a forearm, 2.3-3.0 for the burger hands, 4.4 and more (or no other arm) elsewhere.
    hand_on_other_forearm_max: float = Field(default=1.5, gt=0)
    # A region whose subject-mask mean is below this is background: a pose wrist there is the
    # pose model extrapolating, not a hand.
    background_mask_max: float = Field(default=0.15, ge=0, le=1)
    # Faces without a pose mean people whose hands and limbs nobody checked.
    unposed_faces_are_uncertain: bool = True


class CalibrationSettings(_Section):
    """How the user's decisions recalibrate each cue (core.anomaly.calibration)."""

    # What a cue's own geometric score is worth, in user decisions, against the user's outcomes.
    prior_strength: float = Field(default=4.0, gt=0)
    # A cue keeps its geometric score until the user has decided this many of its regions.
    min_observations: int = Field(default=5, ge=1)
    # A region counts as kept by the user's crop with at least this fraction of its box inside,
    # and as cut away with at most this fraction inside; in between it says nothing.
    kept_inside_min: float = Field(default=0.9, gt=0, le=1)
    cut_inside_max: float = Field(default=0.1, ge=0, lt=1)


class HandModelSettings(_Section):
    """The learned per-hand model (core.anomaly.hand_model): which hands the user cuts away or
    rejects, learned from per-hand region descriptors (and CLIP crop embeddings when present),
    used only once it clears a held-out bar."""

    # Hands the user removed (positives) and kept (negatives) needed before a fit is tried.
    min_positives: int = Field(default=15, ge=2)
    min_negatives: int = Field(default=15, ge=2)
    # Grouped cross-validated AUC (folds never split a decided set) the model must reach to be
    # used at all; below it, the learned model would add noise to the geometric cues.
    min_cv_auc: float = Field(default=0.75, gt=0.5, le=1)
    # A hand the model gives at least this probability of removal is routed to the user as
    # uncertain (never removed on the model's word alone).
    flag_probability: float = Field(default=0.8, gt=0, lt=1)
    # Hand vectors are reduced to this many principal components (fewer when there are fewer
    # examples) so a few dozen decisions cannot overfit a 400-900-d vector.
    pca_components: int = Field(default=16, ge=1, le=256)
    # L2 penalty on the logistic weights (not the bias): a Gaussian prior N(0, 1/l2).
    l2: float = Field(default=1.0, gt=0)
    # Cross-validation folds (at most one per decided set).
    folds: int = Field(default=5, ge=2, le=20)


class AnomalySettings(_Section):
    hand: HandCueSettings = Field(default_factory=HandCueSettings)
    limb: LimbCueSettings = Field(default_factory=LimbCueSettings)
    uncertain: UncertainSettings = Field(default_factory=UncertainSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    hand_model: HandModelSettings = Field(default_factory=HandModelSettings)
    # Cues scored below this (after the region scorer) are dropped.
    min_score: float = Field(default=0.5, ge=0, le=1)
    # Padding of hand boxes (fraction of the landmark extent) so a crop clears the whole hand.
    hand_box_pad: float = Field(default=0.2, ge=0, le=1)
    # Padding of limb boxes, in shoulder widths (limbs are thick; the landmarks are on the bone).
    limb_box_pad: float = Field(default=0.12, ge=0, le=1)
    # More hands than this attached to one pose are extra hands.
    max_hands_per_person: int = Field(default=2, ge=1, le=4)
