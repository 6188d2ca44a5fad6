#!/usr/bin/env python
"""Gradio demo: record or upload speech, get the probability of each emotion (and a timeline for long audio).

    python app.py [--model FOLDER_OR_HUB_ID] [--host 0.0.0.0] [--port 7860] [--share]

Run or imported (a Space), the module builds `demo` once, with every limit applied: the audio duration and
concurrency inside it, the upload size as the default of `demo.launch()`. The host comes from --host, else from
GRADIO_SERVER_NAME (which Spaces set), else Gradio's default (127.0.0.1).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = str(HERE / "checkpoints" / "ge2e-ravdess-emodb")


@dataclass
class Limits:
    max_duration_s: float = 600.0
    max_file_size: str = "25mb"
    concurrency: int = 2
    queue_size: int = 64


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", default=os.environ.get("SER_MODEL", DEFAULT_MODEL), help="folder or Hub id")
    parser.add_argument(
        "--host", default=None, help="default: GRADIO_SERVER_NAME, else 127.0.0.1; 0.0.0.0 serves on every interface"
    )
    parser.add_argument("--port", type=int, default=None, help="default: GRADIO_SERVER_PORT, else 7860 or the next free port")
    parser.add_argument("--share", action="store_true", help="open a public gradio.live link (off by default)")
    parser.add_argument("--max-duration", type=float, default=Limits.max_duration_s, help="seconds of audio")
    parser.add_argument("--max-file-size", default=Limits.max_file_size, help="upload limit, e.g. 25mb")
    parser.add_argument("--concurrency", type=int, default=Limits.concurrency, help="predictions run at once")
    return parser.parse_args(argv)


# Run as a script, the flags set the limits; imported (as a Space or another host does), the defaults and
# SER_MODEL do. Parsed before the heavy imports below, so that `--help` and flag errors answer at once.
ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])

import asyncio  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

import numpy as np  # noqa: E402

from modeling import AudioError, speech  # noqa: E402
from modeling.profile import ProfileError, SpeakerProfile  # noqa: E402
from serving.loading import ModelError, load_classifier, resolve_model_path  # noqa: E402
from serving.sessions import LiveSessions  # noqa: E402

# Gradio's queue records the last GRADIO_ANALYTICS_MAX_EVENTS events (default 10,000) for its monitoring page and
# rebuilds a pandas summary of all of them after every request: under steady load that record made the server's
# memory grow with every request until it held 10,000, and made each request slower. The last 100 are plenty.
# Read when the queue is created, so it is set before any demo is built; an operator's own value wins.
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")

EXAMPLES = sorted(str(p) for p in (HERE / "examples").glob("*.flac"))
# The live tab: seconds classified at each update, updates kept in the timeline, and the longest stream.
LIVE_WINDOW_S = 4.0
LIVE_HISTORY = 300
LIVE_TIME_LIMIT_S = 600
# The most pieces (clips or speech segments of a reference) a session's voice profile holds: its state stays small.
MAX_PROFILE_PIECES = 300


def model_note(model_id: str, num_labels: int) -> str:
    """Which model is loaded and what its card says it measured, read from the card rather than typed in."""
    name = Path(model_id).name if Path(model_id).exists() else model_id  # a folder's name, or the Hub id
    card = Path(model_id) / "README.md"
    if not card.is_file():
        return f"Model: `{name}`. Its card reports no measured accuracy."
    text = card.read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---")[1]) if text.startswith("---") else {}
    try:
        result = meta["model-index"][0]["results"][0]
        metrics = {m["type"]: m["value"] for m in result["metrics"]}
        split = result["dataset"]["split"]
    except (KeyError, IndexError, TypeError):
        return f"Model: `{name}`. Its card reports no measured accuracy."
    return (
        f"Model: `{name}`. Measured on its test set: accuracy {metrics['accuracy']:.1%}, "
        f"macro F1 {metrics['f1_macro']:.3f} (chance: {1 / num_labels:.1%}). Split: {split}."
    )


class LimitedBlocks(gr.Blocks):
    """Blocks whose `launch()` applies the upload limit unless the caller gives another: Gradio 6 takes the limit
    only as a `launch()` argument, and a host that imports `demo` calls `launch()` itself."""

    max_upload_size: str | None = None

    def launch(self, *args, max_file_size=None, **kwargs):
        return super().launch(*args, max_file_size=max_file_size or self.max_upload_size, **kwargs)


def build_demo(model_id: str = DEFAULT_MODEL, limits: Limits = Limits()) -> LimitedBlocks:
    model_id = resolve_model_path(model_id)
    classifier = load_classifier(model_id)  # a plain backbone is refused, not served with a random head
    labels = classifier.labels
    threshold = classifier.uncertainty_threshold
    calibrated = classifier.model.config.temperature != 1.0
    window_s = classifier.feature_extractor.window_s

    # Predictions run on a fixed set of threads that live as long as the server, not on whichever of Gradio's
    # worker threads is free: those come and go, and every new thread that runs torch sets up its own OpenMP
    # team and malloc arena, which under steady load made the server's memory creep up. Each thread has its own
    # speech detector (recurrent state), loaded when the thread starts rather than on its first request.
    workers = ThreadPoolExecutor(
        max_workers=limits.concurrency,
        thread_name_prefix="predict",
        initializer=speech.warm_up if classifier.speech_detection else None,
    )

    async def predict(audio_path: str | None, voice: dict | None = None):
        return await asyncio.get_running_loop().run_in_executor(workers, classify, audio_path, voice)

    def classify(audio_path: str | None, voice: dict | None = None):
        if not audio_path:
            raise gr.Error("No audio received: record something or upload a file first.")
        try:
            # The model's one policy: speech check, then one pass or speech segments; relative to the voice
            # profile when the user made one.
            result = classifier.classify_file(
                audio_path, max_duration_s=limits.max_duration_s, name=Path(audio_path).name, quality=True,
                profile=voice_profile(voice),
            )  # fmt: skip
        except (AudioError, ProfileError) as err:
            raise gr.Error(str(err)) from None
        timeline = None
        if len(result.windows) > 1:
            timeline = timeline_frame([((w["start_s"] + w["end_s"]) / 2, w["scores"]) for w in result.timeline()])
        note = confidence_note(result) + quality_note(result.quality) + adaptation_note(result.adaptation)
        return result.scores, gr.LinePlot(value=timeline, visible=timeline is not None), note

    # "Adapt to this voice": each browser session's state (on the server) keeps the features of the reference clips
    # it gave, not the audio; the profile is made of them while there are enough.
    adapts = classifier.adapts_to_speakers
    min_clips = classifier.model.config.profile_min_clips if adapts else 0

    def voice_profile(voice: dict | None) -> SpeakerProfile | None:
        if not voice or len(voice["features"]) < min_clips:
            return None
        return SpeakerProfile.from_features(classifier.model, np.asarray(voice["features"]), voice["seconds"], voice["names"])

    def voice_status(voice: dict | None) -> str:
        if not voice or not voice["features"]:
            return "**Voice profile: none.** Predictions are for an average speaker."
        profile = voice_profile(voice)
        if profile is None:
            return (
                f"**Voice profile: {len(voice['features'])} clip so far** (from {', '.join(voice['names'])}); add at "
                f"least {min_clips - len(voice['features'])} more before it is used."
            )
        if profile.weight(classifier.model.config) == 0:
            return (
                f"**Voice profile: {profile.num_clips} clips, too few to act yet**: it needs more than "
                f"{classifier.model.config.profile_offset_clips:g} clips in varied moods. Add more."
            )
        return (
            f"**Adapted to this voice**: {profile.num_clips} clips or speech segments, {profile.seconds:.0f} s "
            f"(weight {profile.weight(classifier.model.config):.2f}; more clips in more moods weigh more). Uploads "
            "and the live tab use it until you reset it."
        )

    async def add_reference(audio_path: str | None, voice: dict | None):
        return await asyncio.get_running_loop().run_in_executor(workers, add_reference_sync, audio_path, voice)

    def add_reference_sync(audio_path: str | None, voice: dict | None):
        if not audio_path:
            raise gr.Error("No audio received: record or upload a sentence of this voice first.")
        try:
            wave = classifier.load_audio(audio_path, max_duration_s=limits.max_duration_s)
            features, seconds = classifier.reference_features([wave], [Path(audio_path).name])
        except (AudioError, ProfileError) as err:
            raise gr.Error(str(err)) from None
        voice = voice or {"features": [], "seconds": 0.0, "names": []}
        if len(voice["features"]) + len(features) > MAX_PROFILE_PIECES:
            raise gr.Error(f"The voice profile holds {len(voice['features'])} pieces, enough: it takes at most {MAX_PROFILE_PIECES}.")
        voice = {
            "features": voice["features"] + features.tolist(),
            "seconds": voice["seconds"] + seconds,
            "names": voice["names"] + [f"clip {len(voice['names']) + 1}"],
        }
        return voice, voice_status(voice), None

    def reset_voice():
        return None, voice_status(None)

    def adaptation_note(adaptation: str | None) -> str:
        return f"\n\n**Speaker adaptation**: {adaptation}." if adaptation else ""

    def quality_note(quality) -> str:
        """What the input sounds like, and a warning when it lies outside what the model was trained on."""
        if quality is None:
            return ""
        measured = (
            f"\n\nInput: SNR about {quality.snr_db:.0f} dB, bandwidth {quality.bandwidth_hz / 1000:.1f} kHz, "
            f"level {quality.level_dbfs:.0f} dBFS, clipping {quality.clipping_ratio:.1%}."
        )
        return measured + "".join(f"\n\n**Input quality**: {line}." for line in quality.notes)

    def confidence_note(result) -> str:
        if result.uncertain:
            meaning = " (calibrated: the model is more likely wrong than right here)" if calibrated else ""
            return (
                f"**Uncertain**: the top label, {result.label}, has probability {result.score:.2f}, below "
                f"{threshold:g}{meaning}."
            )
        return f"Top label {result.label}, probability {result.score:.2f} (at least {threshold:g}: not flagged as uncertain)."

    def timeline_frame(points) -> pd.DataFrame | None:
        if not points:
            return None
        return pd.DataFrame(
            [{"time (s)": t, "emotion": label, "probability": scores[label]} for t, scores in points for label in labels]
        )

    live_sessions = LiveSessions(window_s=LIVE_WINDOW_S, history=LIVE_HISTORY)

    async def live(chunk, voice: dict | None, request: gr.Request):
        return await asyncio.get_running_loop().run_in_executor(workers, live_classify, chunk, request.session_hash, voice)

    def live_classify(chunk, key: str, voice: dict | None = None):
        if chunk is None:
            return gr.skip(), gr.skip(), gr.skip()
        sampling_rate, samples = chunk
        profile = voice_profile(voice)
        update = classifier.stream(live_sessions.get(key), sampling_rate, samples, profile=profile)
        frame = timeline_frame(update.timeline)
        adapted = profile is not None and profile.weight(classifier.model.config) > 0
        status = update.status + (" (adapted to your voice)" if adapted and update.scores else "")
        return update.scores, gr.LinePlot(value=frame, visible=frame is not None), status

    def live_start(request: gr.Request):
        live_sessions.reset(request.session_hash)  # a new recording starts a new timeline

    # Uploads and recordings are deleted from the server's cache two hours after upload (checked hourly).
    with LimitedBlocks(title="Speech emotion recognition", delete_cache=(3600, 7200)) as demo:
        gr.Markdown(
            "# Speech emotion recognition\n"
            f"Record or upload speech; the model returns the probability of each of its {len(labels)} labels "
            f"({', '.join(labels)}). Audio longer than {window_s:g} s is also shown as a timeline.\n\n"
            f"{model_note(model_id, len(labels))}\n\n"
            "Trained on acted speech (the model card names the corpora and their licences): expect errors on "
            "everyday speech. Not for decisions about people."
        )
        voice = gr.State(None)  # this browser session's reference clips (features only)
        voice_indicator = gr.Markdown(voice_status(None) if adapts else "", elem_id="voice-status")
        with gr.Tab("Record or upload"):
            with gr.Row():
                with gr.Column():
                    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech")
                    submit = gr.Button("Recognize emotion", variant="primary")
                with gr.Column():
                    label = gr.Label(num_top_classes=len(labels), label="Emotion probabilities")
                    note = gr.Markdown()
                    timeline = gr.LinePlot(
                        x="time (s)", y="probability", color="emotion", y_lim=[0, 1], label="Timeline", visible=False
                    )
            if EXAMPLES:
                gr.Examples(examples=EXAMPLES, inputs=audio, label="Examples (RAVDESS actors 14 and 15, not in the bundled model's training data)")
        with gr.Tab("Adapt to this voice", visible=adapts):
            gr.Markdown(
                f"Record or upload a few sentences of one voice, in any mood, and add each to the profile (at least "
                f"{min_clips}; ten or more in several moods work best). From then on, uploads and the live tab judge "
                "that voice relative to itself: a naturally loud or high voice is no longer read as angry or fearful. "
                "The profile belongs to this browser session: the server keeps the clips' features, not the audio, "
                "until you reset it or the session ends. A few clips of a single mood leave the answer as it is."
            )
            with gr.Row():
                reference = gr.Audio(sources=["microphone", "upload"], type="filepath", label="A sentence of this voice")
                with gr.Column():
                    add = gr.Button("Add to voice profile", variant="primary")
                    reset = gr.Button("Reset voice profile")
        with gr.Tab("Live"):
            gr.Markdown(
                f"Press record and speak: the emotion of the last {LIVE_WINDOW_S:g} s updates about once a second, "
                f"and the timeline keeps the last {LIVE_HISTORY} updates. A stream stops after {LIVE_TIME_LIMIT_S // 60} "
                "minutes; press record again to go on."
            )
            with gr.Row():
                with gr.Column():
                    microphone = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone (live)")
                    live_status = gr.Markdown("Not listening yet.")
                with gr.Column():
                    live_label = gr.Label(num_top_classes=len(labels), label="Now")
                    live_timeline = gr.LinePlot(
                        x="time (s)", y="probability", color="emotion", y_lim=[0, 1], label="Rolling timeline", visible=False
                    )
            microphone.start_recording(live_start, api_visibility="private")
            # One chunk at a time, in order, none dropped: each call appends about 0.1 s of audio (cheap), and only
            # one a second classifies.
            microphone.stream(
                live, inputs=[microphone, voice], outputs=[live_label, live_timeline, live_status], stream_every=0.5,
                time_limit=LIVE_TIME_LIMIT_S, trigger_mode="multiple", concurrency_limit=1, concurrency_id="live",
                api_name="live",
            )  # fmt: skip
        submit.click(predict, inputs=[audio, voice], outputs=[label, timeline, note], api_name="predict")
        # Session state only: no use as API endpoints.
        add.click(add_reference, inputs=[reference, voice], outputs=[voice, voice_indicator, reference], api_visibility="private")
        reset.click(reset_voice, outputs=[voice, voice_indicator], api_visibility="private")
    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    demo.max_upload_size = limits.max_file_size
    return demo


try:
    demo = build_demo(ARGS.model, Limits(ARGS.max_duration, ARGS.max_file_size, ARGS.concurrency))
except ModelError as err:
    if __name__ != "__main__":
        raise
    sys.exit(f"app.py: {err}")  # one line, not a traceback


def main() -> None:
    # server_name=None lets Gradio read GRADIO_SERVER_NAME (a Space sets 0.0.0.0), else it binds 127.0.0.1.
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share, footer_links=["api"])


if __name__ == "__main__":
    main()
