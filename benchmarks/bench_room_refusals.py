"""Speech detection in reverberant rooms: how many clips of held-out speakers it refuses, over many rooms.

    python benchmarks/bench_room_refusals.py [--rooms 6]

The robustness benchmark puts each test clip in one of six rooms per RT60 target. Refusals there are rare events
that depend on the room a clip meets, so this measures them over more rooms: every test clip of the bundled model
(348 clips) in each of `--rooms` further simulated rooms per target RT60 (0.3, 0.6 and 1.0 s; seeds apart from the
robustness benchmark's, training's and the speech/music check's rooms), through `detect_speech` alone, counting
clips refused as no speech and as music without a voice, and the lowest peak Silero reaches at the presence level
(`SpeechDetector.presence`; under 0.09 a clip without a segment is refused).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from bench_robustness import records
from common import BUNDLED, save

from modeling import load_audio
from modeling.speech import MusicWithoutVoiceError, NoSpeechError, detect_speech, detector
from training import conditions as C

ROOM_SEED = 90_000  # none of bench_robustness (3000-10005), bench_music (70000-70011) or training's bank (42000-42023)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=6, help="rooms per RT60 target")
    args = parser.parse_args()
    split = json.loads((BUNDLED / "all_results.json").read_text())["split"]["actors"]
    test = [r for r in records() if r["speaker"] in split["test"]]
    clean = [load_audio(r["audio"]) for r in test]
    results = {}
    for target in (0.3, 0.6, 1.0):
        rooms = [C.room_impulse_response(target, seed=ROOM_SEED + 1000 * int(target * 10) + k) for k in range(args.rooms)]
        counts = {"clips": 0, "refused_as_no_speech": 0, "refused_as_music": 0, "lowest_presence_peak": 1.0}
        refused = []
        for i, wave in enumerate(clean):
            for k, (rir, _) in enumerate(rooms):
                x = C.reverberate(wave, rir)
                counts["clips"] += 1
                try:
                    detect_speech(x)
                except MusicWithoutVoiceError:
                    counts["refused_as_music"] += 1
                    refused.append(f"{test[i]['audio'].rsplit('/', 1)[-1]} room {k}: music")
                except NoSpeechError:
                    counts["refused_as_no_speech"] += 1
                    refused.append(f"{test[i]['audio'].rsplit('/', 1)[-1]} room {k}: no speech")
                counts["lowest_presence_peak"] = min(counts["lowest_presence_peak"], detector().presence(x))
        counts["measured_rt60_s"] = [round(float(np.min([r for _, r in rooms])), 2), round(float(np.max([r for _, r in rooms])), 2)]
        counts["refused"] = refused
        results[f"room RT60 {target:g} s"] = counts
        print(target, {k: v for k, v in counts.items() if k != "refused"}, refused, flush=True)
    save("room_refusals", {"speakers": sorted(split["test"]), "clips": len(test), "rooms_per_target": args.rooms, "conditions": results})


if __name__ == "__main__":
    main()
