"""The label set and the input sampling rate: the one place each of these facts is defined."""

SAMPLING_RATE = 16_000

# RAVDESS emotion codes 01..08, in the order of the official file-name convention.
EMOTIONS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

ID2LABEL: dict[int, str] = dict(enumerate(EMOTIONS))
LABEL2ID: dict[str, int] = {label: i for i, label in ID2LABEL.items()}
