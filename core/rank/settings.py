"""Ranking and mode settings (section `rank`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat


class PriorWeights(BaseModel):
    """Weights of the prior ranking, on standardised features (z-scores over the user's library).

    Used before any decision exists. Fitted by scripts/fit_prior.py on human-annotated AI images
    of people (the user keeps the least anatomically broken image of a set); the data, the
    selection and the leave-one-prompt-out figures are in core/rank/prior_card.json. Features the
    fit did not select weigh 0; the quality terms are small tie-breakers the anatomy labels cannot
    measure (see the card).
    """

    model_config = ConfigDict(extra="forbid")
    sharpness_log: float = 0.075
    contrast: float = 0.0
    exposure_dev: float = 0.0
    clipping: float = 0.0
    noise: float = 0.0
    brisque: float = -0.1  # BRISQUE is lower-is-better
    subject_fraction: float = 0.0
    subject_sharpness_log: float = 0.1
    face_present: float = -0.327
    face_size: float = 0.751
    hands_visible: float = 0.0
    pose_completeness: float = 0.0
    wrists_visible: float = 0.0
    knees_visible: float = 0.0
    ankles_visible: float = 0.0
    wrists_without_hands: float = 0.0
    people: float = 0.0
    anomaly_count: float = 0.0
    anomaly_score_sum: float = 0.0
    anomaly_score_max: float = 0.0
    anomaly_uncertain: float = 0.0
    anomaly_uncertain_regions: float = 0.0
    anomaly_hands: float = 0.0
    anomaly_limbs: float = 0.0
    anomaly_feet: float = 0.0
    near_duplicate: float = 0.0
    # P(winner) = softmax(utility / temperature); not a feature. Fitted on held-out prompts (the
    # selection redone without each prompt): 50, the search's bound, says the fitted weights ordered
    # held-out sets of 4 and 2 no better than a coin, so the prior ranks by them but states ~chance.
    temperature: float = Field(default=50.0, gt=0)


class RankSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Embedding dimensions kept after PCA on the user's own images: a few hundred decisions cannot
    # fit 512 weights, but 8 directions of "look" can be learned from ~100 sets.
    pca_components: int = Field(default=8, ge=0, le=64)
    # Below this many embeddings the PCA basis is noise, so the embedding is left out (and said so).
    pca_min_images: int = Field(default=40, ge=2)
    # The prior standardises its features (means, spreads, the embedding's PCA) over the user's
    # images; past this many present images it uses this many, a fixed pseudo-random sample (the
    # smallest sha256), because reading and parsing every image's sidecars grows with the library
    # (about 1 ms per image) and blocks a round each time the library has grown by 10 %. A sample
    # of thousands pins means and spreads to a few hundredths of a standard deviation; a library
    # this size or smaller is standardised over every image, as before.
    prior_fit_images: int = Field(default=5000, ge=2)
    # Gaussian prior precision on the standardised weights (N(0, 1/l2)) when the prior is fitted on
    # labelled data (scripts/fit_prior.py); 1.0 keeps weights of order one until the data insists.
    l2: float = Field(default=1.0, gt=0)
    # How hard a trained model is pulled towards the prior (the precision of N(prior, I/strength)):
    # each training run tries these on the user's own decisions, out of fold, and keeps the
    # strongest pull within one standard error of the best. Decisions that teach nothing beyond the
    # prior leave the model at the prior; decisions with a clear signal pick a weak pull.
    shrink_strengths: list[PositiveFloat] = Field(default=[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0], min_length=1)
    max_newton_iterations: int = Field(default=100, ge=1)
    # Posterior samples for the set probabilities; fixed seed so a proposal is reproducible.
    posterior_samples: int = Field(default=512, ge=16, le=100_000)
    # Fewer decided sets than this: no model is trained and the prior ranks.
    min_train_decisions: int = Field(default=10, ge=1)
    # Retrain after this many new decisions (and nightly at `nightly_retrain_hour`, local time).
    retrain_every_decisions: int = Field(default=20, ge=1)
    nightly_retrain_hour: int = Field(default=3, ge=0, le=23)

    # Evaluation: this fraction of prompt/person groups is held out, chosen by a salted hash so the
    # same groups stay held out across versions and old and new models are compared on unseen data.
    heldout_fraction: float = Field(default=0.2, gt=0, lt=1)
    split_salt: str = "bestshot-rank-v1"
    # The rolling recent slice: the newest decisions, predicted by a model fit only on older ones.
    recent_slice: int = Field(default=50, ge=1)

    # A proposal is routed to the user first when the winner beats the runner-up by less than
    # this much probability, or when the posterior utility gap is under `uncertain_gap_z` std devs.
    uncertain_margin: float = Field(default=0.15, ge=0, le=1)
    uncertain_gap_z: float = Field(default=1.0, ge=0)
    # Contribution (in utility units) below which a feature is not worth naming as a reason.
    reason_min_contribution: float = Field(default=0.1, ge=0)
    max_reasons: int = Field(default=3, ge=1, le=10)

    # Modes. Recommend starts after this many decisions (watch mode only logs and learns).
    recommend_after_decisions: int = Field(default=25, ge=0)
    # Batch needs this many consecutive user-decided sets whose proposal (made before the decision
    # was learned) agreed; "confident" counts only sets that batch would have decided by itself.
    batch_after_agreeing_sets: int = Field(default=300, ge=1)
    batch_streak_scope: Literal["all", "confident"] = "all"
    # "Near-zero residual anomalies": the rate over the streak may not exceed this.
    batch_max_residual_anomaly_rate: float = Field(default=0.01, ge=0, le=1)
    # Batch decides a set by itself only when its confidence clears a threshold calibrated so that
    # precision on past (honest) proposals is at least the target, using a one-sided Wilson lower
    # bound with this z (1.645 = 95%) so that a lucky small sample does not set the threshold.
    batch_precision_target: float = Field(default=0.95, gt=0, le=1)
    precision_bound_z: float = Field(default=1.645, ge=0)
    batch_min_calibration_sets: int = Field(default=50, ge=1)
    # Once in batch, drop back to recommend when precision of the confident sets over this many
    # recent sets falls below the target (or residual anomalies rise above the limit).
    batch_exit_window: int = Field(default=100, ge=1)
    # Crop proposals count as accepted when the user's box has at least this IoU with ours.
    crop_accept_iou: float = Field(default=0.9, gt=0, le=1)
    metrics_window: int = Field(default=100, ge=1)

    prior: PriorWeights = Field(default_factory=PriorWeights)
