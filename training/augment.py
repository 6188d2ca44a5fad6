"""On-the-fly waveform augmentation for training with a live backbone (`audiomentations`), seeded per clip and epoch.

Augmentation runs on the cached, already denoised waveform, and the waveform is normalized again afterwards, as
the model's preprocessing does at inference. A plain gain change would be undone by that normalization, so the
gain step is a gain *transition* (a loudness ramp inside the clip), which survives it.

Each clip's augmentation is drawn from a generator seeded by (seed, epoch, row): the same seed gives the same
waveforms whatever the number of data-loader workers, and a resumed run sees what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from modeling import SAMPLING_RATE, SERFeatureExtractor


@dataclass
class AugmentationConfig:
    """The recipe, recorded in all_results.json and the card."""

    speed_min: float = 0.9
    speed_max: float = 1.1
    p_speed: float = 0.5
    pitch_semitones: float = 2.0
    p_pitch: float = 0.3
    gain_db: float = 6.0
    p_gain: float = 0.3
    noise_snr_min_db: float = 10.0
    noise_snr_max_db: float = 40.0
    p_noise: float = 0.5
    # Real-world recording conditions (`--augment_conditions`): rooms, telephone channels, MP3 and clipping.
    conditions: bool = False
    room_rt60_min_s: float = 0.2
    room_rt60_max_s: float = 1.5
    p_room: float = 0.4
    p_telephone: float = 0.3
    mp3_kbps_min: int = 16
    mp3_kbps_max: int = 48
    p_mp3: float = 0.2
    p_clipping: float = 0.1
    # Babble: other training speakers talking at once (only where the training clips are given as its source).
    p_babble: float = 0.5
    babble_snr_min_db: float = 0.0
    babble_snr_max_db: float = 20.0
    # Background recordings (music, street and machine noise: a folder of audio files), mixed in under the voice.
    backgrounds: str | None = None
    p_background: float = 0.3
    background_snr_min_db: float = 0.0
    background_snr_max_db: float = 20.0

    def describe(self) -> str:
        text = (
            f"speed perturbation ×{self.speed_min:g}–{self.speed_max:g} (tempo and pitch together, p={self.p_speed:g}), "
            f"pitch shift ±{self.pitch_semitones:g} semitones (p={self.p_pitch:g}), "
            f"gain transition ±{self.gain_db:g} dB (p={self.p_gain:g}), "
            f"coloured noise at {self.noise_snr_min_db:g}–{self.noise_snr_max_db:g} dB SNR (p={self.p_noise:g})"
        )
        if self.conditions:
            text += (
                f", simulated rooms with target RT60 {self.room_rt60_min_s:g}–{self.room_rt60_max_s:g} s (p={self.p_room:g}), "
                f"a telephone channel (a band of about 300-3400 Hz at 8 kHz, without a codec or through mu-law, "
                f"A-law or GSM 06.10, p={self.p_telephone:g}), MP3 at {self.mp3_kbps_min}–{self.mp3_kbps_max} kbit/s "
                f"(p={self.p_mp3:g}), clipping (p={self.p_clipping:g}), babble of six training-set talkers at "
                f"{self.babble_snr_min_db:g}–{self.babble_snr_max_db:g} dB SNR (p={self.p_babble:g})"
            )
            if self.backgrounds:
                text += (
                    f", background recordings of {Path(self.backgrounds).as_posix()} at "
                    f"{self.background_snr_min_db:g}–{self.background_snr_max_db:g} dB SNR (p={self.p_background:g})"
                )
        return text + "; seeded per clip and epoch (audiomentations)"


class Augmenter:
    """A seeded `audiomentations.Compose` with the model's normalization after it."""

    def __init__(
        self, config: AugmentationConfig, seed: int, sampling_rate: int = SAMPLING_RATE, babble_sources: list[np.ndarray] | None = None
    ):
        import audiomentations as A

        self.config = config
        self.seed = seed
        self.sampling_rate = sampling_rate
        # Babble made once from the given clips (the training speakers': never a held-out voice), 60 s looped.
        self.babble = None
        self.babble_key = None
        if config.conditions and babble_sources:
            from .conditions import babble

            self.babble = babble(babble_sources, seconds=60.0, talkers=6, seed=seed)
            self.babble_key = hashlib.sha1(self.babble.tobytes()).hexdigest()[:12]
        # What the background folder holds (names and sizes), so that cached copies follow a change of its files.
        self.backgrounds_key = None
        self.rooms_key = None  # what the bank of rooms holds: set when it is made or found
        if config.conditions and config.backgrounds:
            files = sorted(f for f in Path(config.backgrounds).rglob("*") if f.is_file())
            if not files:
                raise FileNotFoundError(f"no background recordings in {config.backgrounds} (the recipe's come with `bash install.sh --test`)")
            listing = repr([(f.relative_to(config.backgrounds).as_posix(), f.stat().st_size) for f in files])
            self.backgrounds_key = hashlib.sha1(listing.encode()).hexdigest()[:12]
        c = config
        self.compose = A.Compose(
            [
                # Speed perturbation (Kaldi-style): resampling changes tempo and pitch together.
                A.Resample(
                    min_sample_rate=int(sampling_rate * c.speed_min),
                    max_sample_rate=int(sampling_rate * c.speed_max),
                    p=c.p_speed,
                ),
                A.PitchShift(min_semitones=-c.pitch_semitones, max_semitones=c.pitch_semitones, p=c.p_pitch),
                A.GainTransition(min_gain_db=-c.gain_db, max_gain_db=c.gain_db, min_duration=0.2, max_duration=2.0, p=c.p_gain),
                A.AddColorNoise(min_snr_db=c.noise_snr_min_db, max_snr_db=c.noise_snr_max_db, p=c.p_noise),
                *(self.conditions() if c.conditions else []),
            ]
        )
        # Runs every step once here: librosa loads its resampler lazily (seconds), and data-loader workers are
        # forked anew every epoch, so they inherit what is loaded now instead of each paying for it again.
        for index in range(4):
            self(np.random.default_rng(index).standard_normal(sampling_rate).astype(np.float32), index, 2**31)

    def conditions(self) -> list:
        """Rooms, telephone channels, MP3 and clipping: the channels of real recordings. Rooms are a bank of simulated
        impulse responses (`training/conditions.py`, made once per recipe and seed) applied by audiomentations."""
        import audiomentations as A

        from .telephone import TelephoneChannel

        c = self.config
        backgrounds = []
        if c.backgrounds:
            # Noise in the room is not the talker's reverberation: added after the room, before the channel.
            backgrounds.append(
                A.AddBackgroundNoise(
                    sounds_path=c.backgrounds, min_snr_db=c.background_snr_min_db, max_snr_db=c.background_snr_max_db,
                    noise_rms="relative", p=c.p_background,
                )
            )  # fmt: skip
        return [
            A.ApplyImpulseResponse(ir_path=str(self.impulse_responses()), leave_length_unchanged=True, p=c.p_room),
            *backgrounds,
            TelephoneChannel(p=c.p_telephone),
            A.Mp3Compression(min_bitrate=c.mp3_kbps_min, max_bitrate=c.mp3_kbps_max, backend="fast-mp3-augment", p=c.p_mp3),
            A.ClippingDistortion(min_percentile_threshold=0, max_percentile_threshold=20, p=c.p_clipping),
        ]

    def impulse_responses(self, count: int = 24) -> Path:
        """A folder of `count` room impulse responses with RT60 targets spread over the recipe's range."""
        import hashlib
        import tempfile

        import soundfile as sf

        from .conditions import room_impulse_response

        c = self.config
        # The marker names how rooms are drawn: banks drawn otherwise (before the ray tracing was seeded, or from
        # other seeds) are not reused.
        key = hashlib.sha1(repr(("rooms seeded by SeedSequence([seed, i, 1])", c.room_rt60_min_s, c.room_rt60_max_s, count, self.seed)).encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / f"ser-impulse-responses-{key}"
        if not (folder / "done").exists():
            folder.mkdir(parents=True, exist_ok=True)
            for i, rt60 in enumerate(np.linspace(c.room_rt60_min_s, c.room_rt60_max_s, count)):
                # Seeds drawn from (seed, i): no `--seed` gives the rooms the benchmarks use (small seeds of their own).
                room_seed = int(np.random.SeedSequence([self.seed, i, 1]).generate_state(1)[0])
                rir, _ = room_impulse_response(float(rt60), seed=room_seed)
                sf.write(folder / f"room{i:02d}.wav", (rir / np.abs(rir).max()).astype(np.float32), self.sampling_rate)
            (folder / "done").touch()
        # What the bank holds, as the babble's key: cached copies follow the rooms themselves.
        self.rooms_key = hashlib.sha1(b"".join(f.read_bytes() for f in sorted(folder.glob("room*.wav")))).hexdigest()[:12]
        return folder

    def __call__(self, wave: np.ndarray, index: int, epoch: int) -> np.ndarray:
        """The augmented, re-normalized waveform of row `index` in `epoch` (the input is not modified)."""
        seed = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]
        # audiomentations draws from the global `random` and `numpy.random` state: seed them for this clip, and
        # put back the caller's state so that nothing else's randomness is disturbed.
        saved = random.getstate(), np.random.get_state()
        random.seed(int(seed))
        np.random.seed(int(seed))
        try:
            out = self.compose(samples=np.asarray(wave, dtype=np.float32), sample_rate=self.sampling_rate)
            if self.babble is not None and np.random.random() < self.config.p_babble:
                from .conditions import add_noise

                snr = np.random.uniform(self.config.babble_snr_min_db, self.config.babble_snr_max_db)
                out = add_noise(out, self.babble, snr, float(np.mean(out.astype(np.float64) ** 2)), seed=int(seed))
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
        return SERFeatureExtractor.normalize(out)


class AugmentedDataset(torch.utils.data.Dataset):
    """A training dataset whose `input_values` are augmented on access; `set_epoch` picks the epoch's draws."""

    def __init__(self, dataset, augmenter: Augmenter):
        self.dataset = dataset
        self.augmenter = augmenter
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        row = dict(self.dataset[int(index)])
        row["input_values"] = self.augmenter(np.asarray(row["input_values"], dtype=np.float32), int(index), self.epoch)
        return row


class EpochCallback(TrainerCallback):
    """Tells the augmented dataset which epoch starts (before the epoch's data-loader workers are created)."""

    def __init__(self, dataset: AugmentedDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))
