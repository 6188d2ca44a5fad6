"""A telephone call as an audiomentations transform (a module of its own, so that the class pickles for data-loader
workers while `training.augment` imports audiomentations only when it augments)."""

from __future__ import annotations

import random

import numpy as np
from audiomentations.core.transforms_interface import BaseWaveformTransform

from .conditions import NARROWBAND_CODECS, narrowband


class TelephoneChannel(BaseWaveformTransform):
    """A telephone call: band-limited (low edge drawn from 250-400 Hz, high edge from 3000-3600 Hz), sampled at
    8 kHz, and sent without a codec or through a narrowband codec of telephony (G.711 mu-law or A-law, GSM 06.10),
    back at the input's rate. Band edges and codec are drawn per clip from audiomentations' seeded random state."""

    supports_multichannel = False
    CODECS = tuple(NARROWBAND_CODECS)

    def randomize_parameters(self, samples, sample_rate):
        super().randomize_parameters(samples, sample_rate)
        if self.parameters["should_apply"]:
            self.parameters["low_hz"] = random.uniform(250.0, 400.0)
            self.parameters["high_hz"] = random.uniform(3000.0, 3600.0)
            self.parameters["codec"] = random.choice(self.CODECS)

    def apply(self, samples, sample_rate):
        p = self.parameters
        return narrowband(samples, sample_rate, p["low_hz"], p["high_hz"], p["codec"]).astype(np.float32)
