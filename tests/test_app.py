"""The demo as users meet it: a real server on localhost, called through gradio_client and a real browser."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from conftest import BUNDLED, REPO, bundled_labels
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import modeling  # noqa: F401  (registers the model with the Auto classes and the pipeline, as users do)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
MAX_DURATION_S = 30
# The tests that call the module's server run on one xdist worker, so that it starts once.
SERVED = pytest.mark.xdist_group("server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str], env: dict, log_path) -> tuple[subprocess.Popen, int]:
    """Starts `python app.py` on a free port and waits until it answers."""
    port = free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"app.py exited early:\n{log.read()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2)
            return proc, port
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("app.py did not start within 120 s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_SERVER_NAME"}  # Gradio's own default host
    args = ["--max-duration", str(MAX_DURATION_S), "--max-file-size", "2mb"]
    proc, port = start_app(args, env, tmp_path_factory.mktemp("app") / "server.log")
    yield {"url": f"http://127.0.0.1:{port}", "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return Client(server["url"], verbose=False)


@pytest.fixture(scope="module")
def example():
    return REPO / "examples" / "angry_actor14.flac"


def confidences(result) -> dict[str, float]:
    label, _timeline, note = result
    top = max(label["confidences"], key=lambda c: c["confidence"])
    assert ("Uncertain" in note) == (top["confidence"] < 0.5)  # the bundled model's threshold
    scores = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert sorted(scores) == sorted(bundled_labels())
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert label["label"] == max(scores, key=scores.get)
    return scores


@SERVED
def test_predict_matches_the_pipeline(client, example):
    from transformers import pipeline

    expected = pipeline("audio-classification", model=str(BUNDLED), top_k=None, trust_remote_code=True)(
        str(example)
    )
    scores = confidences(client.predict(handle_file(str(example)), api_name="/predict"))
    assert scores == pytest.approx({r["label"]: r["score"] for r in expected}, abs=1e-4)


@SERVED
def test_one_policy_for_pipeline_predict_and_demo(client, tmp_path):
    """A file longer than one window gets the same probabilities from the pipeline, predict.py and the demo:
    all three go through predict_long with the window and hop saved in the model's preprocessor config."""
    import csv as csv_module
    import json

    from transformers import pipeline

    import predict

    config = json.loads((BUNDLED / "preprocessor_config.json").read_text())
    assert (config["window_s"], config["hop_s"]) == (5.0, 2.5)
    waves = [sf.read(p, dtype="float32")[0] for p in sorted((REPO / "examples").glob("*.flac"))[:3]]
    path = tmp_path / "three-utterances.wav"
    sf.write(path, np.concatenate(waves), 16_000)
    assert sf.info(path).duration > 2 * config["window_s"]

    via_pipeline = {r["label"]: r["score"] for r in pipeline("audio-classification", model=str(BUNDLED), top_k=None, trust_remote_code=True)(str(path))}
    out = tmp_path / "rows.csv"
    assert predict.main([str(path), "--out", str(out)]) == 0
    (row,) = list(csv_module.DictReader(open(out, newline="")))
    via_predict = {label: float(row[label]) for label in bundled_labels()}
    via_demo = confidences(client.predict(handle_file(str(path)), api_name="/predict"))
    assert via_predict == pytest.approx(via_pipeline, abs=1e-4)
    assert via_demo == pytest.approx(via_pipeline, abs=1e-4)
    # One pass over the whole file gives other probabilities: the agreement above is the shared policy.
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from modeling import load_audio, predict_proba

    model, fe = AutoModelForAudioClassification.from_pretrained(BUNDLED).eval(), AutoFeatureExtractor.from_pretrained(BUNDLED)
    whole = dict(zip(bundled_labels(), predict_proba(model, fe, [load_audio(path)])[0].tolist()))
    assert whole != pytest.approx(via_pipeline, abs=1e-3)


@SERVED
def test_long_audio_gets_a_timeline(client, example, tmp_path):
    wave, sr = sf.read(example, dtype="float32")
    path = tmp_path / "long.wav"
    sf.write(path, np.tile(wave, 4), sr)
    label, timeline, _ = client.predict(handle_file(str(path)), api_name="/predict")
    assert timeline["visible"] is True
    rows = timeline["value"]["data"]
    times = sorted({r[0] for r in rows})
    assert len(times) == 4 and times[-1] > 10  # one point per utterance: the file repeats one clip four times
    assert {r[1] for r in rows} == set(bundled_labels())
    _, short_timeline, _ = client.predict(handle_file(str(example)), api_name="/predict")
    assert short_timeline["visible"] is False


def write_bad(kind: str, tmp_path, example):
    wave, sr = sf.read(example, dtype="float32")
    path = tmp_path / f"{kind}.wav"
    if kind == "silent":
        sf.write(path, np.zeros(sr * 2, np.float32), sr)
    elif kind == "too_short":
        sf.write(path, wave[: int(0.05 * sr)] + 0.1, sr)
    elif kind == "corrupt":
        # A WAV header followed by garbage where the format chunk should be.
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + np.random.default_rng(0).bytes(300))
    elif kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("definitely not audio\n" * 20)
    elif kind == "too_long":
        sf.write(path, np.tile(wave, int(MAX_DURATION_S / (len(wave) / sr)) + 2), sr, subtype="PCM_U8")
    elif kind == "too_big":
        path = tmp_path / "too_big.wav"
        sf.write(path, np.tile(wave, 8), sr, subtype="FLOAT")  # ~4 MB, over the 2 MB limit
    return path


BAD = {
    "silent": "is silent",
    "too_short": "is too short",
    "corrupt": "could not be decoded as audio",
    "text": "could not be decoded as audio",
    "too_long": f"is too long \\(.*\\); the limit is {MAX_DURATION_S} s",
    "too_big": "(?i)file.*(size|large|exceed)",
}


@SERVED
@pytest.mark.parametrize("kind", BAD)
def test_bad_input_gives_clear_error_and_server_keeps_serving(kind, client, server, example, tmp_path):
    path = write_bad(kind, tmp_path, example)
    with pytest.raises(Exception, match=BAD[kind]) as info:
        client.predict(handle_file(str(path)), api_name="/predict")
    if kind != "too_big":
        assert isinstance(info.value, AppError)
    assert server["proc"].poll() is None
    confidences(client.predict(handle_file(str(example)), api_name="/predict"))


@SERVED
def test_empty_submission(client, example):
    with pytest.raises(AppError, match="No audio received"):
        client.predict(None, api_name="/predict")
    confidences(client.predict(handle_file(str(example)), api_name="/predict"))


@SERVED
def test_no_files_served_beyond_gradio_needs(server):
    for path in ("/file=app.py", "/gradio_api/file=app.py", f"/gradio_api/file={REPO / 'app.py'}", "/file=/etc/passwd"):
        try:
            status = urllib.request.urlopen(server["url"] + path, timeout=5).status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status in (403, 404), path


@pytest.mark.slow
def test_an_operator_sets_how_many_events_the_queue_keeps():
    """Gradio re-summarises its whole event record after every request; at its default of 10,000 events that
    record made the served demo's memory grow with every request (benchmarks/bench_load.py). A Space imports
    app.py, so this checks the demo that the import builds, in a fresh process: an operator's setting is kept (the
    default of 100 is checked by test_imported_demo_applies_the_upload_limit's import)."""
    env = {**os.environ, "GRADIO_ANALYTICS_MAX_EVENTS": "7"}
    done = subprocess.run(
        [sys.executable, "-c", "import app; print(app.demo._queue.ANALYTICS_MAX_EVENTS)"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) == 7


def listening(pid: int) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


@SERVED
def test_default_host_is_local_only(server):
    assert listening(server["proc"].pid) == {"127.0.0.1"}


@pytest.mark.slow
@pytest.mark.parametrize("flags, expected", [([], "0.0.0.0"), (["--host", "127.0.0.1"], "127.0.0.1")])
def test_host_comes_from_the_flag_or_gradio_server_name(flags, expected, tmp_path):
    """A Space sets GRADIO_SERVER_NAME=0.0.0.0 and runs `python app.py`: the app must listen there, unless a
    --host flag says otherwise."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "0.0.0.0"}
    proc, _ = start_app(flags, env, tmp_path / "server.log")
    try:
        assert listening(proc.pid) == {expected}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


IMPORTED_LAUNCH = """
import sys
import numpy as np, soundfile as sf
from gradio_client import Client, handle_file
import app
print("EVENTS KEPT", app.demo._queue.ANALYTICS_MAX_EVENTS)
port, big = int(sys.argv[1]), sys.argv[2]
sf.write(big, np.random.default_rng(0).standard_normal(7_000_000).astype(np.float32) * 0.1, 16000, subtype="FLOAT")
app.demo.launch(server_port=port, prevent_thread_lock=True)  # as a host that imports `demo` launches it
try:
    Client(f"http://127.0.0.1:{port}", verbose=False).predict(handle_file(big), api_name="/predict")
    print("ACCEPTED")
except Exception as err:
    print("REFUSED", str(err)[:300].replace(chr(10), " "))
app.demo.close()
"""


@pytest.mark.slow
def test_imported_demo_applies_the_upload_limit(tmp_path):
    """The upload limit (25 MB by default) holds when a host imports `demo` and calls `launch()` itself; the queue
    keeps a record of 100 events, not Gradio's 10,000 (see test_an_operator_sets_how_many_events_the_queue_keeps)."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_MAX_EVENTS"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_LAUNCH, str(free_port()), str(tmp_path / "big.wav")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "EVENTS KEPT 100" in done.stdout.splitlines()
    assert (tmp_path / "big.wav").stat().st_size > 25 * 1024 * 1024
    (verdict,) = [line for line in done.stdout.splitlines() if line.startswith(("REFUSED", "ACCEPTED"))]
    assert verdict.startswith("REFUSED") and re.search("(?i)file.*(size|large|exceed)", verdict), verdict


playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser_factory():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is needed (.ci/run installs it)")
    with playwright.sync_playwright() as p:
        yield lambda *flags: p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + list(flags))


def read_label(page) -> str:
    page.get_by_test_id("label-output-value").wait_for(timeout=60_000)
    return page.get_by_test_id("label-output-value").inner_text().strip()


@SERVED
def test_browser_upload(browser_factory, server, client, example, tmp_path):
    expected = confidences(client.predict(handle_file(str(example)), api_name="/predict"))
    browser = browser_factory()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server["url"], wait_until="load")
    assert "ge2e-ravdess-emodb" in page.content() and "accuracy" in page.content()
    page.get_by_role("button", name="Upload file").click()
    page.locator("input[type=file]").set_input_files(str(example))
    page.get_by_role("button", name="Recognize emotion").click()
    top = read_label(page)
    assert top == max(expected, key=expected.get)
    for emotion in bundled_labels():
        assert page.get_by_text(emotion, exact=True).count() >= 1
    page.get_by_text("Input: SNR about").first.wait_for(timeout=10_000)  # the input-quality report
    shot = tmp_path / "upload.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    # A file that is not audio shows the server's message on the page.
    page.get_by_role("button", name="Clear").first.click()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 100)
    page.get_by_role("button", name="Upload file").click()
    page.locator("input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Recognize emotion").click()
    page.get_by_text("could not be decoded as audio").first.wait_for(timeout=30_000)
    # A telephone call gets the note that it lies outside what the model was trained on, with the measured figure.
    from training.conditions import telephone

    call = tmp_path / "call.wav"
    sf.write(call, telephone(sf.read(example, dtype="float32")[0], "gsm"), 16_000)
    page.get_by_role("button", name="Clear").first.click()
    page.get_by_role("button", name="Upload file").click()
    page.locator("input[type=file]").set_input_files(str(call))
    page.get_by_role("button", name="Recognize emotion").click()
    page.get_by_text("Input quality: telephone band").first.wait_for(timeout=30_000)
    browser.close()


def microphone_page(browser_factory, server, fake_microphone, tab: str | None = None):
    """A page whose microphone plays `fake_microphone` (a 16-bit WAV, looped), recording in `tab`."""
    browser = browser_factory(
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_microphone}",
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
    page = context.new_page()
    page.goto(server["url"], wait_until="load")
    if tab:
        page.get_by_role("tab", name=tab).click()
    page.get_by_role("button", name="Record", exact=True).click()
    return browser, page


@SERVED
def test_browser_microphone_recording(browser_factory, server, client, example, tmp_path):
    fake = tmp_path / "fake_mic.wav"
    wave, sr = sf.read(example, dtype="float32")
    sf.write(fake, wave, sr, subtype="PCM_16")
    browser, page = microphone_page(browser_factory, server, fake)
    page.wait_for_timeout(4000)
    page.get_by_role("button", name="Stop", exact=True).first.click()
    # The recording is uploaded to the server when it stops; its download link appears once it is there.
    page.get_by_role("button", name="Download").first.wait_for(timeout=30_000)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").first.click()
    recording = tmp_path / "recording.wav"
    download.value.save_as(recording)
    # What the microphone took: seconds of the clip's speech, not silence.
    heard, rate = sf.read(recording, dtype="float32")
    assert len(heard) / rate > 2.0 and np.abs(heard).max() > 0.05
    page.get_by_role("button", name="Recognize emotion").click()
    top = read_label(page)
    # The page shows the server's answer for exactly that recording.
    expected = confidences(client.predict(handle_file(str(recording)), api_name="/predict"))
    assert top == max(expected, key=expected.get)
    page.screenshot(path=str(tmp_path / "microphone.png"), full_page=True)
    browser.close()


@SERVED
def test_demo_api_matrix(client, server, bad_cases, example):
    for case in bad_cases:
        expected = case.expected("demo")
        if expected == "ok":
            confidences(client.predict(handle_file(str(case.path)), api_name="/predict"))
        else:
            with pytest.raises(Exception, match=expected):
                client.predict(handle_file(str(case.path)), api_name="/predict")
        assert server["proc"].poll() is None, f"the server died on {case.name}"
    confidences(client.predict(handle_file(str(example)), api_name="/predict"))


def readme_snippets() -> list[tuple[int, str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


# The one snippet that needs the Hub (a pretrained backbone download); every other one runs here.
NEEDS_THE_HUB = ["facebook/wav2vec2-base"]


# Runs each snippet in a fresh namespace, in one process (one start-up of torch and transformers for all of them),
# and reports what each printed or raised.
RUN_SNIPPETS = """
import contextlib, io, json, sys, traceback
results = []
for code in json.load(sys.stdin):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<README snippet>", "exec"), {"__name__": "__main__"})
        results.append({"stdout": out.getvalue(), "error": None})
    except BaseException:
        results.append({"stdout": out.getvalue(), "error": traceback.format_exc()})
print("SNIPPETS " + json.dumps(results))
"""


SNIPPETS = readme_snippets()  # read once: the parametrization and the run below see the same snippets


@pytest.fixture(scope="module")
def snippet_results(server) -> dict[int, dict]:
    runnable = [(line, code) for line, code in SNIPPETS if not any(name in code for name in NEEDS_THE_HUB)]
    # The only change: the demo's address, which here is a free port rather than 7860.
    codes = [code.replace("http://127.0.0.1:7860", server["url"]) for _, code in runnable]
    done = subprocess.run(
        [sys.executable, "-c", RUN_SNIPPETS], input=json.dumps(codes), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("SNIPPETS ")]
    return {n: result for (n, _), result in zip(runnable, json.loads(line.removeprefix("SNIPPETS ")))}


@SERVED
@pytest.mark.parametrize("line, code", SNIPPETS, ids=[f"README.md:{n}" for n, _ in SNIPPETS])
def test_readme_snippet_runs_as_written(line, code, snippet_results):
    if any(name in code for name in NEEDS_THE_HUB):
        pytest.skip(f"README.md:{line} downloads a backbone from the Hub, which tests cannot reach")
    result = snippet_results[line]
    assert result["error"] is None, f"README.md:{line}\n{result['error'][-3000:]}"
    if "print(" in code:
        assert result["stdout"].strip()


@SERVED
def test_browser_live_tab(browser_factory, server, example, tmp_path):
    """The streaming microphone, fed from a real clip: the current emotion and its status keep updating as the
    audio streams in; fed noise, the tab says that no speech is heard."""
    speech = tmp_path / "speech.wav"
    wave, sr = sf.read(example, dtype="float32")
    sf.write(speech, wave, sr, subtype="PCM_16")
    browser, page = microphone_page(browser_factory, server, speech, tab="Live")
    status = page.get_by_text(re.compile(r"^Speech heard: "))
    status.wait_for(timeout=60_000)
    first = int(re.search(r"at (\d+) s", status.inner_text()).group(1))
    # Updated while the person speaks: the status comes back for later and later seconds of the stream. Waited for
    # as events (the seconds of audio each update has heard), however slowly a busy machine delivers them.
    page.wait_for_function(
        """first => [...document.querySelectorAll("p, span, div")].some(e => {
            const m = /^Speech heard: .* at (\\d+) s/.exec(e.innerText.trim());
            return m !== null && Number(m[1]) >= first + 2;
        })""",
        arg=first,
        timeout=120_000,
    )
    assert read_label(page) in bundled_labels()
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    browser.close()

    noise = tmp_path / "noise.wav"
    sf.write(noise, 0.05 * np.random.default_rng(0).standard_normal(sr * 4), sr, subtype="PCM_16")
    browser, page = microphone_page(browser_factory, server, noise, tab="Live")
    page.get_by_text(re.compile(r"^No speech heard in the last 4 s")).wait_for(timeout=60_000)
    browser.close()


@SERVED
def test_browser_adapt_to_a_voice_and_reset(browser_factory, server, data_dir, tmp_path):
    """The demo's "Adapt to this voice": clips of one speaker added one by one build a profile that the upload tab
    then uses (the note says so and the answer changes), until the reset."""
    # Actor 14 (unseen in training): ten clips of every emotion, which the model hears as varied moods, so that the
    # mood-aware profile acts in full.
    clips = sorted((data_dir / "Actor_14").glob("*.flac"))[::5][:11]
    browser = browser_factory()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server["url"], wait_until="load")
    status = page.locator("#voice-status")
    status.get_by_text("Voice profile: none").wait_for(timeout=30_000)

    def recognize(adapted: bool) -> str:
        """Classifies the last clip in the upload tab; waits for the answer of this click (the previous one stays on
        the page until it comes: with or without the adaptation note tells them apart)."""
        page.get_by_role("tab", name="Record or upload").click()
        page.get_by_role("button", name="Clear").first.click()
        page.get_by_role("button", name="Upload file").first.click()
        page.locator("input[type=file]").first.set_input_files(str(clips[-1]))
        page.get_by_role("button", name="Recognize emotion").click()
        note = page.get_by_text("Speaker adaptation: adapted to a speaker profile of 10 clips")
        note.wait_for(state="visible" if adapted else "hidden", timeout=60_000)
        answer = page.get_by_text(re.compile(r"label,? \w+,? (has )?probability [\d.]+")).first
        answer.wait_for(timeout=60_000)
        return re.search(r"label,? (\w+),? (has )?probability ([\d.]+)", answer.inner_text()).group(0)

    before = recognize(adapted=False)
    page.get_by_role("tab", name="Adapt to this voice").click()
    for i, clip in enumerate(clips[:10]):
        # Each added clip empties the reference box, ready for the next.
        page.get_by_role("button", name="Upload file").last.click()
        page.locator("input[type=file]").last.set_input_files(str(clip))
        page.get_by_role("button", name="Add to voice profile").click()
        page.wait_for_function(
            "n => document.querySelector('#voice-status').innerText.includes(n)",
            arg=f"{i + 1} clip" if i == 0 else f"{i + 1} clips",
            timeout=60_000,
        )
    status.get_by_text("Adapted to this voice").wait_for(timeout=30_000)
    adapted = recognize(adapted=True)
    assert adapted != before  # the top label or its probability moved
    page.get_by_role("tab", name="Adapt to this voice").click()
    page.get_by_role("button", name="Reset voice profile").click()
    status.get_by_text("Voice profile: none").wait_for(timeout=30_000)
    assert recognize(adapted=False) == before
    page.screenshot(path=str(tmp_path / "adapt.png"), full_page=True)
    browser.close()
