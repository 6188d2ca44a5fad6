"""Speech emotion recognition for the Hugging Face ecosystem.

Importing this package registers the model with the Auto classes (so saved folders load without
`trust_remote_code`) and installs `SERAudioClassificationPipeline` for the "audio-classification" task.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification
from transformers import logging as hf_logging
from transformers.pipelines import PIPELINE_REGISTRY

from .audio import SAMPLING_RATE, AudioError, load_audio, prepare_waveform
from .configuration_ser import SERConfig
from .feature_extraction_ser import SERFeatureExtractor
from .inference import LongPrediction, WindowPrediction, predict_long, predict_proba
from .modeling_ser import SERModel, SERPreTrainedModel
from .pipeline import SERAudioClassificationPipeline

AutoConfig.register(SERConfig.model_type, SERConfig, exist_ok=True)
AutoModelForAudioClassification.register(SERConfig, SERModel, exist_ok=True)
AutoFeatureExtractor.register(SERConfig, SERFeatureExtractor, exist_ok=True)

# Saved folders carry their code and an `auto_map`, so they also load with trust_remote_code=True.
SERConfig.register_for_auto_class()
SERModel.register_for_auto_class("AutoModelForAudioClassification")
SERFeatureExtractor.register_for_auto_class()

# The replacement falls back to the stock pipeline for every model that is not an SER model (same outputs), so
# the "already registered" warning is silenced; the caller's verbosity comes back even if registering fails.
_verbosity = hf_logging.get_verbosity()
hf_logging.set_verbosity_error()
try:
    PIPELINE_REGISTRY.register_pipeline(
        "audio-classification", pipeline_class=SERAudioClassificationPipeline, pt_model=AutoModelForAudioClassification
    )
finally:
    hf_logging.set_verbosity(_verbosity)

__all__ = [
    "SAMPLING_RATE",
    "AudioError",
    "LongPrediction",
    "SERAudioClassificationPipeline",
    "SERConfig",
    "SERFeatureExtractor",
    "SERModel",
    "SERPreTrainedModel",
    "WindowPrediction",
    "load_audio",
    "predict_long",
    "predict_proba",
    "prepare_waveform",
]
