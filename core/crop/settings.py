"""Crop proposer weights and rules (section `crop`).

Objective per window: alpha*SaliencyInside + epsilon*AreaKept - beta*AnomalyOverlap
- gamma*HeadCut - delta*JointCut - zeta*BodyShort. The user's hard rules (remove anomalies,
then keep heads, then keep the subject) rank windows before the objective does; the weights
order windows within a rank and say how much each term matters for the score shown.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CropSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Fraction of the subject (saliency mass) kept: the reason to crop at all.
    alpha_saliency: float = Field(default=1.0, ge=0)
    # Score-weighted anomalies left in the crop (a residue beyond removed_max_overlap counts in
    # full); large so that any residue dominates the other terms.
    beta_anomaly: float = Field(default=4.0, ge=0)
    # Fraction of each head box cut (plus eyes cut); the user never wants eyes or forehead cut.
    gamma_head: float = Field(default=2.0, ge=0)
    # Edges passing close to shoulders, elbows, wrists, hips, knees, ankles (amputation look).
    delta_joint: float = Field(default=0.3, ge=0)
    # Area kept: among crops that remove the anomalies, lose as little content as possible.
    epsilon_area: float = Field(default=0.6, ge=0)
    # Full-body shots keeping less than `full_body_min_fraction` of body height.
    zeta_body: float = Field(default=1.0, ge=0)
    # Uncertain hand regions are removal targets at this weight relative to anomalies.
    uncertain_weight: float = Field(default=0.5, ge=0)
    # Treat uncertain hand regions (undetectable / unreliable hands) as things to crop away.
    remove_uncertain: bool = True
    # Uncertain regions with these tags are evidence of a defect (`hand_suspect`: the learned
    # hand model's probability that you would cut the hand away): like anomalies, they make a
    # crop worth proposing. The others only say a hand could not be checked (missed by the
    # detector, landmarks that contradict each other, hands on a face or arm): on their own they
    # send the image to review with the full frame proposed and the crops that remove them as
    # fallbacks. A crop always costs composition (on GAICD human ratings the crops the search
    # made around such regions scored below the uncropped photo), so it needs evidence.
    uncertain_evidence_tags: list[str] = Field(default_factory=lambda: ["hand_suspect"])

    # Smallest crop side as a fraction of the original side; smaller crops are a different photo.
    min_side_frac: float = Field(default=0.5, gt=0, le=1)
    # An anomaly counts as removed when at most this fraction of its box stays in the crop.
    removed_max_overlap: float = Field(default=0.02, ge=0, lt=1)
    # A head counts as kept when at most this fraction of its box is cut.
    head_cut_tolerance: float = Field(default=0.02, ge=0, lt=1)
    # Head box = face box grown upwards by this fraction of its height (forehead, hairline).
    forehead_extend: float = Field(default=0.3, ge=0, le=2)
    # Extra penalty per eye outside the crop, on top of the head box fraction.
    eye_penalty: float = Field(default=1.0, ge=0)
    # Faces at least this fraction of the largest face's width are primary: cutting one ranks
    # as a head cut; smaller (background) faces only weigh in the objective.
    primary_face_min_rel: float = Field(default=0.5, gt=0, le=1)
    # Below this fraction of saliency kept the subject counts as lost (recommend reject).
    # A head-and-shoulders crop of a half-body portrait keeps about a third of the saliency mass.
    min_subject_kept: float = Field(default=0.3, ge=0, le=1)
    # The user's rule for full-body shots: keep at least this fraction of body height.
    full_body_min_fraction: float = Field(default=1 / 3, ge=0, le=1)
    # An edge within this many body scales (shoulder widths) of a joint cuts through it.
    joint_margin: float = Field(default=0.08, ge=0)
    joint_min_visibility: float = Field(default=0.6, ge=0, le=1)

    # When only the full frame keeps the ratio exactly (e.g. coprime sides such as 1024x683),
    # propose near-exact crops and report their error; never beyond `max_aspect_error`.
    allow_near_exact: bool = True
    max_aspect_error: float = Field(default=0.005, ge=0, le=0.1)
    # Near-exact sizes within this relative error all count as equally good.
    near_exact_tolerance: float = Field(default=0.001, ge=0, le=0.1)

    # Search: crop sizes tried, grid positions per axis per size, hill-climb starts.
    # Defaults keep a proposal under 5 ms; anchors make rule satisfaction exact at any grid
    # density, so the grid and refinement only tune the objective (larger values gain < 0.01).
    n_scales: int = Field(default=10, ge=1, le=4096)
    grid_positions: int = Field(default=9, ge=2, le=256)
    refine_starts: int = Field(default=4, ge=1, le=64)
    refine_max_iters: int = Field(default=8, ge=0, le=1000)
    # Fallbacks overlapping a better proposal by more than this IoU are suppressed.
    nms_iou: float = Field(default=0.6, gt=0, le=1)
    n_fallbacks: int = Field(default=2, ge=0, le=10)
    # Longer side of the landmark-based subject prior used when no saliency mask exists.
    prior_side: int = Field(default=96, ge=16, le=1024)

    # Preview JPEG for Finder: longer side and quality.
    preview_max_side: int = Field(default=1024, ge=128, le=8192)
    preview_quality: int = Field(default=85, ge=10, le=100)
