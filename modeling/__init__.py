"""What ships with a speech emotion model: config, model, feature extractor, decoding, speech detection, the inference
policy (`SERClassifier`) and the pipeline. Every module here imports only its siblings and third-party packages, so
that `save_pretrained` can copy them beside the weights and a Hub user runs exactly this code with
`trust_remote_code=True`. What runs the product (batch prediction, the demo's sessions, training) lives beside this
package and imports it, never the other way round.

Importing the package registers the model with the Auto classes, so that saved folders also load without
`trust_remote_code`, and marks the classes whose code `save_pretrained` writes.

Runtime packages: torch, transformers, numpy, scipy, soundfile, soxr, noisereduce, librosa (the GE2E backbone's mel
filters), silero-vad, opensmile (and torchcodec with FFmpeg for containers such as WebM and M4A).
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

from .audio import SAMPLING_RATE, AudioError, load_audio, prepare_waveform
from .configuration_ser import SERConfig
from .feature_extraction_ser import SERFeatureExtractor
from .inference import LongPrediction, Prediction, SERClassifier, WindowPrediction, predict_long, predict_proba
from .modeling_ser import SERForSequenceClassification, SERModel, SERPreTrainedModel
from .pipeline_ser import SERAudioClassificationPipeline
from .profile import ProfileError, SpeakerProfile
from .speech import MusicWithoutVoiceError, NoSpeechError

AutoConfig.register(SERConfig.model_type, SERConfig, exist_ok=True)
AutoModelForAudioClassification.register(SERConfig, SERForSequenceClassification, exist_ok=True)
AutoFeatureExtractor.register(SERConfig, SERFeatureExtractor, exist_ok=True)

# Saved folders carry their code and an `auto_map`, so they also load with trust_remote_code=True.
SERConfig.register_for_auto_class()
SERForSequenceClassification.register_for_auto_class("AutoModelForAudioClassification")
SERFeatureExtractor.register_for_auto_class()

__all__ = [
    "SAMPLING_RATE",
    "AudioError",
    "LongPrediction",
    "MusicWithoutVoiceError",
    "NoSpeechError",
    "Prediction",
    "ProfileError",
    "SERAudioClassificationPipeline",
    "SERClassifier",
    "SERConfig",
    "SERFeatureExtractor",
    "SERForSequenceClassification",
    "SERModel",
    "SERPreTrainedModel",
    "SpeakerProfile",
    "WindowPrediction",
    "load_audio",
    "predict_long",
    "predict_proba",
    "prepare_waveform",
]
