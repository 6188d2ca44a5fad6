"""A GE2E speaker encoder (Wan et al. 2018) as a transformers backbone: 40 mel bands -> 3-layer LSTM(256).

The architecture and preprocessing of Resemblyzer's `VoiceEncoder` (Apache-2.0, Copyright Corentin Jemine; its
pretrained weights, trained on thousands of speakers, are converted into the model's own safetensors by the
training code), re-implemented so that inference needs neither Resemblyzer nor webrtcvad:

- each waveform is brought to -30 dBFS (Resemblyzer raises quieter input to that level and leaves louder input as
  it is; the feature extractor has already normalized every waveform to unit variance, so one fixed level, the
  one the encoder was trained at, replaces both);
- power mel spectrogram (not log) of 25 ms windows every 10 ms, as `librosa.feature.melspectrogram`;
- partial utterances of 160 frames (1.6 s), 1.3 per second, the last one kept when at least 75% covered.

The backbone's `last_hidden_state` is the last LSTM layer's output at every frame of every partial, in order:
a speaker-verification encoder was trained to make its *final* state ignore emotion, but the frame outputs still
carry pitch, energy and voice quality, and their mean and spread over time (`pooling="mean_std"`) hold most of what
tells emotions apart. The speaker embedding itself (Resemblyzer's `embed_utterance`) is `speaker_embedding`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class GE2EConfig(PretrainedConfig):
    r"""
    Configuration of a [`GE2EModel`].

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000): the rate of the input waveforms.
        num_mel_bins (`int`, *optional*, defaults to 40): mel bands of the (power) spectrogram.
        window_ms, hop_ms (`int`, *optional*, defaults to 25 and 10): spectrogram window and step.
        hidden_size (`int`, *optional*, defaults to 256): LSTM width, and the size of the speaker embedding.
        num_hidden_layers (`int`, *optional*, defaults to 3): LSTM layers.
        partial_frames (`int`, *optional*, defaults to 160): frames per partial utterance (1.6 s).
        partial_rate (`float`, *optional*, defaults to 1.3): partial utterances per second.
        min_coverage (`float`, *optional*, defaults to 0.75): the last partial is kept when this much of it is audio.
        target_dbfs (`float`, *optional*, defaults to -30.0): level each waveform is brought to before the spectrogram.
    """

    model_type = "ge2e"

    sampling_rate: int = 16_000
    num_mel_bins: int = 40
    window_ms: int = 25
    hop_ms: int = 10
    hidden_size: int = 256
    num_hidden_layers: int = 3
    partial_frames: int = 160
    partial_rate: float = 1.3
    min_coverage: float = 0.75
    target_dbfs: float = -30.0

    @property
    def n_fft(self) -> int:
        return self.sampling_rate * self.window_ms // 1000

    @property
    def hop_length(self) -> int:
        return self.sampling_rate * self.hop_ms // 1000


def partial_starts(num_samples: int, config: GE2EConfig) -> list[int]:
    """First mel frame of each partial utterance covering `num_samples` samples (Resemblyzer's rule)."""
    hop, frames = config.hop_length, config.partial_frames
    num_frames = int(np.ceil((num_samples + 1) / hop))
    step = int(np.round((config.sampling_rate / config.partial_rate) / hop))
    starts = list(range(0, max(1, num_frames - frames + step + 1), step))
    coverage = (num_samples - starts[-1] * hop) / (frames * hop)
    if coverage < config.min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


class GE2EModel(PreTrainedModel):
    """GE2E encoder over 16 kHz waveforms `(batch, samples)`, right-padded, with an optional `attention_mask`."""

    config: GE2EConfig
    config_class = GE2EConfig
    base_model_prefix = "ge2e"
    main_input_name = "input_values"
    input_modalities = "audio"

    def __init__(self, config: GE2EConfig):
        super().__init__(config)
        self.lstm = nn.LSTM(config.num_mel_bins, config.hidden_size, config.num_hidden_layers, batch_first=True)
        self.linear = nn.Linear(config.hidden_size, config.hidden_size)
        # Derived from the config, not learned: not saved with the weights.
        self.register_buffer("mel_basis", torch.from_numpy(self._mel_filterbank(config)), persistent=False)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.post_init()

    @staticmethod
    def _mel_filterbank(config: GE2EConfig) -> np.ndarray:
        import librosa

        return librosa.filters.mel(sr=config.sampling_rate, n_fft=config.n_fft, n_mels=config.num_mel_bins).astype(np.float32)

    def _init_weights(self, module: nn.Module) -> None:
        # nn.LSTM and nn.Linear initialize themselves; the pretrained weights replace them anyway.
        if isinstance(module, GE2EModel):
            module.mel_basis.copy_(torch.from_numpy(self._mel_filterbank(self.config)))
            module.window.copy_(torch.hann_window(self.config.n_fft))

    def _get_feat_extract_output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Frames of `last_hidden_state` for inputs of these lengths (partials x frames per partial)."""
        counts = [len(partial_starts(int(n), self.config)) for n in input_lengths.reshape(-1).tolist()]
        return torch.tensor(counts, device=input_lengths.device).reshape(input_lengths.shape) * self.config.partial_frames

    def partials(self, wave: torch.Tensor) -> torch.Tensor:
        """One unpadded waveform `(samples,)` -> its partial utterances' spectrograms `(partials, frames, mels)`."""
        config = self.config
        wave = wave.float()
        rms = wave.pow(2).mean().sqrt().clamp(min=1e-8)
        wave = wave * (10 ** (config.target_dbfs / 20) / rms)
        starts = partial_starts(len(wave), config)
        needed = (starts[-1] + config.partial_frames) * config.hop_length
        if needed >= len(wave):
            wave = nn.functional.pad(wave, (0, needed - len(wave)))
        # The spectrogram in fp32 whatever the model's dtype (its power spans too many decades for fp16), then the
        # LSTM's dtype.
        spec = torch.stft(wave, config.n_fft, config.hop_length, window=self.window.float(), center=True, pad_mode="constant", return_complex=True)
        mel = (self.mel_basis.float() @ spec.abs().pow(2)).T
        return torch.stack([mel[s : s + config.partial_frames] for s in starts]).to(self.lstm.weight_ih_l0.dtype)

    def _run(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        """The LSTM over every clip's partials: `(padded frame outputs, final states of the partials, partials per clip)`."""
        lengths = attention_mask.sum(-1).tolist() if attention_mask is not None else [input_values.shape[-1]] * len(input_values)
        parts = [self.partials(wave[: int(n)]) for wave, n in zip(input_values, lengths)]
        counts = [len(p) for p in parts]
        outputs, (hidden, _) = self.lstm(torch.cat(parts))
        frames = outputs.reshape(-1, self.config.hidden_size).split([c * self.config.partial_frames for c in counts])
        return nn.utils.rnn.pad_sequence(list(frames), batch_first=True), hidden[-1], counts

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        last_hidden_state = self._run(input_values, attention_mask)[0]
        return BaseModelOutput(last_hidden_state=last_hidden_state, hidden_states=(last_hidden_state,) if output_hidden_states else None)

    @torch.no_grad()
    def speaker_embedding(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Resemblyzer's utterance embedding `(batch, hidden)`: the L2-normed mean of the partials' normed
        `relu(linear(final state))`."""
        _, states, counts = self._run(input_values, attention_mask)
        partial = nn.functional.normalize(torch.relu(self.linear(states)), dim=-1)
        return torch.stack([nn.functional.normalize(p.mean(0), dim=-1) for p in partial.split(counts)])
