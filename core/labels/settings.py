"""Decision-observation settings (section `labels`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LabelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # --- When is a set decided? (core/labels/decide.py) ---------------------------------------
    # A set whose members are not all placed yet closes once the user has acted on this many
    # OTHER sets after their last action on it ("moved on"). Two, not one: glancing at the next
    # set and coming back to finish this one is common. None disables this rule.
    close_after_other_sets: int | None = Field(2, ge=1)
    # ...or once this long has passed since the last action on the set, so the last set of a
    # session still gets its line. None disables this rule.
    close_after_seconds: float | None = Field(900.0, gt=0)

    # --- Crop recovery (core/labels/crop_recovery.py) ----------------------------------------
    # Correlation (ECC / NCC, 1 = identical) between the crop and the source region it is said to
    # come from. Re-encoded or rescaled crops of the right source score above 0.97 in practice; a
    # different image of the same set scores well below 0.8.
    crop_min_quality: float = Field(0.9, ge=0.0, le=1.0)
    # Smallest crop searched for, as a fraction of the source's width; smaller boxes are not
    # looked for, which keeps the scale search short. 0.1 of 1024 px is a 102 px wide face crop.
    crop_min_fraction: float = Field(0.1, gt=0.0, le=1.0)
    # Longest side of the coarse level where the scale is searched. Lower is faster but loses
    # small crops; 192 keeps a 0.1 crop at ~19 px, still enough texture to correlate.
    crop_coarse_side: int = Field(192, ge=64, le=1024)
    # Longest side of the middle level where scale and position are narrowed before the fine fit.
    crop_medium_side: int = Field(512, ge=128, le=2048)
    # Ratio between neighbouring box widths in the coarse scale search (2 %): the middle level
    # then only needs to search +-2 steps.
    crop_scale_step: float = Field(0.02, gt=0.001, le=0.2)
    # Mean absolute grey-level difference (0..255) below which an unscaled match counts as an exact
    # cut: 0 for a lossless cut, small for one re-saved as high-quality JPEG.
    crop_exact_tolerance: float = Field(1.5, ge=0.0, le=32.0)
    # Sources given the full (fine) recovery after the coarse prefilter ranks the candidates;
    # 2 guards against two near-identical set members.
    crop_full_candidates: int = Field(2, ge=1, le=16)
