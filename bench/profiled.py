"""``authnode`` under pyinstrument, started and stopped by signals.

``python -m bench.profiled OUT_DIR serve --role api ...`` runs the authnode CLI in this
process. SIGUSR1 starts sampling; SIGUSR2 stops it and writes ``OUT_DIR/profile-N.txt``
(the call tree, wall time of the event-loop thread, idle time included as ``select``),
``profile-N.html`` and ``profile-N.pyisession`` (``pyinstrument --load``).
``python -m bench --profile OUT_DIR`` drives it around each measured HTTP scenario.
(py-spy would attach from outside, but cannot read this machine's Python; pyinstrument
runs inside.)
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

from pyinstrument import Profiler

INTERVAL_S = 0.0005


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    state: dict[str, object] = {"profiler": None, "count": 0}

    def start(_signum: int, _frame: FrameType | None) -> None:
        if state["profiler"] is None:
            profiler = Profiler(interval=INTERVAL_S, async_mode="disabled")
            profiler.start()
            state["profiler"] = profiler

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler = state["profiler"]
        if not isinstance(profiler, Profiler):
            return
        state["profiler"] = None
        profiler.stop()
        count = int(str(state["count"])) + 1
        state["count"] = count
        base = out_dir / f"profile-{count}"
        base.with_suffix(".txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False))
        base.with_suffix(".html").write_text(profiler.output_html())
        if profiler.last_session is not None:
            profiler.last_session.save(str(base.with_suffix(".pyisession")))
        base.with_suffix(".done").write_text("")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from authnode.cli import main as authnode_main

    sys.argv = ["authnode", *sys.argv[2:]]
    authnode_main()


if __name__ == "__main__":
    main()
