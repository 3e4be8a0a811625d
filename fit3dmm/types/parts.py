"""Names and order of the facial parts used everywhere in fit3dmm.

The order is the one of the paper's part list; every per-part tensor (masks ``(B, P, H, W)``,
weights ``(B, P)``, vertex labels ``(V,)``) uses it.  ``"left"``/``"right"`` are the *subject's*
left and right: the subject's left eye appears on the image's right in a frontal photo.
"""

PART_NAMES: tuple[str, ...] = (
    "left_eye",
    "right_eye",
    "left_eyebrow",
    "right_eyebrow",
    "up_lip",
    "down_lip",
    "nose",
    "skin",
)
NUM_PARTS = len(PART_NAMES)
PART_INDEX: dict[str, int] = {name: i for i, name in enumerate(PART_NAMES)}

# Colours (RGB) for figures and colour-coded part maps; index = part index, hair and background last.
PART_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 120, 255),
    (0, 200, 255),
    (120, 60, 0),
    (170, 100, 30),
    (255, 40, 80),
    (200, 0, 120),
    (0, 220, 120),
    (255, 210, 150),
)
HAIR_COLOR = (60, 40, 20)
BACKGROUND_COLOR = (0, 0, 0)
