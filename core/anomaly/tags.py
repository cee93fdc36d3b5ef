"""The anomaly tag vocabulary, apart from the report model so that the config (and so every
command, `bestshot status` included) can name the tags without importing numpy."""

from __future__ import annotations

from typing import Final

# The user's tag vocabulary. Cues map onto it; the two below have no geometric cue.
TAGS: Final = (
    "extra_fingers",
    "warped_wrist",
    "limb_misaligned",
    "long_hand",
    "long_foot",
    "wrong_toes_count",
    "foreshortened_upper_arm",
    "malformed_phone_grip",
)
UNDETECTABLE_TAGS: Final = {
    "wrong_toes_count": "pose landmarks have one toe point per foot (foot_index) and no hand-like "
    "foot model exists in the sidecars, so toes cannot be counted",
    "malformed_phone_grip": "needs the phone itself (an object detector or a learned region score); "
    "landmarks alone cannot tell a phone grip from any other grip",
}
# Regions where a hand (or a whole person) should be but could not be checked; not anomalies,
# never "clean".
UNCERTAIN_TAGS: Final = ("hand_undetected", "hand_low_confidence", "hand_suspect", "person_unchecked")
# Uncertain regions that stand for a whole person: a crop cannot cut them away, only route the image.
PERSON_TAGS: Final = ("person_unchecked",)
