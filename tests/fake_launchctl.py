"""A test double for macOS's `launchctl` (an external OS tool, not bestshot's code).

It reproduces the behaviour that matters to `bestshot service install`: `bootout` returns at once
but the job stays listed (and `bootstrap` fails with "Bootstrap failed: 5: Input/output error")
until its teardown finishes, `FAKE_LAUNCHCTL_TEARDOWN` seconds later; a disabled job refuses to
bootstrap until `enable`; `print` shows state, pid and last exit code like launchctl does. With
FAKE_LAUNCHCTL_BROKEN=1 every bootstrap fails. State lives in $FAKE_LAUNCHCTL_DIR; every call is
appended to calls.log there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

state_dir = Path(os.environ["FAKE_LAUNCHCTL_DIR"])
state_file = state_dir / "state.json"
teardown = float(os.environ.get("FAKE_LAUNCHCTL_TEARDOWN", "1.0"))


def load() -> dict:
    return json.loads(state_file.read_text()) if state_file.exists() else {"loaded": False}


def save(st: dict) -> None:
    state_file.write_text(json.dumps(st))


def main(argv: list[str]) -> int:
    with (state_dir / "calls.log").open("a") as f:
        f.write(" ".join(argv) + "\n")
    st = load()
    if st.get("stopping_until") and time.time() >= st["stopping_until"]:
        st = {"loaded": False, "disabled": st.get("disabled", False)}  # teardown finished
        save(st)
    cmd = argv[0] if argv else ""
    if cmd == "bootout":
        if not st.get("loaded"):
            print("Boot-out failed: 3: No such process", file=sys.stderr)
            return 3
        if not st.get("stopping_until"):
            st["stopping_until"] = time.time() + teardown
            save(st)
        return 0
    if cmd == "print":
        if not st.get("loaded"):
            print(f'Could not find service "{argv[1].rsplit("/", 1)[-1]}" in domain', file=sys.stderr)
            return 113
        print(f"{argv[1]} = {{\n\tactive count = 1\n\tpath = {st.get('plist', '')}")
        print(f"\tstate = {'stopping' if st.get('stopping_until') else 'running'}")
        print(f"\tpid = {st.get('pid', 4242)}\n\tlast exit code = {st.get('last_exit', '(never exited)')}\n}}")
        return 0
    if cmd == "enable":
        st["disabled"] = False
        save(st)
        return 0
    if cmd == "bootstrap":
        if os.environ.get("FAKE_LAUNCHCTL_BROKEN") == "1" or st.get("loaded") or st.get("disabled"):
            print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
            return 5
        save({"loaded": True, "pid": 5151, "last_exit": 0, "plist": argv[2], "disabled": False})
        return 0
    print(f"fake launchctl: unsupported {argv}", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
