"""A stand-in `nvidia-smi` for tests (this machine has no GPU): answers `--query-gpu=...` and
`--query-compute-apps=...` with `--format=csv[,noheader][,nounits]` exactly as the real tool prints them, with the
column headers, units and values of a recorded real answer (tests/fixtures/nvidia-smi/, see its README), for a
pretend machine the test describes in a JSON file named by $FAKE_GPUS:

    {"capture": "h100-load",   # which recorded answers give the format and the card's fixed values
     "gpus": 2,                # pretend GPUs 0..N-1 (copies of the recorded card, each its own UUID)
     "used_mib": 0,            # memory in use on each GPU besides its processes
     "apps_dir": "/tmp/x",     # one file per pretend process on a GPU: named by its pid, {"gpu": 0, "mib": 900}
                               # (listed while that pid lives, as the driver lists a live CUDA context)
     "mode": "ok"}             # or "hang", or the name of a recorded error (error-no-driver: printed, exit 9)
"""

import json
import os
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"
ALIASES = {"used_memory": "used_gpu_memory", "name": "process_name", "gpu_index": "index"}
EXIT = {"error-no-driver": 9, "error-version-mismatch": 18, "error-unknown-field": 2}


def recorded(name: str) -> tuple[list[str], list[str]]:
    header, *rows = (FIXTURES / name).read_text().splitlines()
    return header.split(", "), [r for r in rows if r]


def column(header: list[str], field: str) -> int:
    field = ALIASES.get(field, field)
    for i, cell in enumerate(header):
        if cell.split(" [")[0] == field:
            return i
    print(f'Field "{field}" is not a valid field to query.')
    sys.exit(2)


def unitless(value: str) -> str:
    for unit in (" MiB", " %", " W", " MHz", " C"):
        if value.endswith(unit):
            return value[: -len(unit)]
    return value


def uuid(i: int) -> str:
    return f"GPU-{i:08x}-0000-0000-0000-000000000000"


def alive(pid: int) -> bool:
    """A process the driver lists: running, not ended (a zombie, ended but not yet reaped, has freed its memory)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def apps(state: dict) -> list[dict]:
    out = []
    directory = state.get("apps_dir")
    if not directory or not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        if not name.isdigit() or not alive(int(name)):
            continue
        try:
            data = json.loads((Path(directory) / name).read_text())
        except (OSError, ValueError):
            continue  # being written
        out.append({"pid": int(name), **data})
    return out


def main(argv: list[str]) -> int:
    state = json.loads(Path(os.environ["FAKE_GPUS"]).read_text())
    log = state.get("calls")
    if log:
        with open(log, "a") as f:
            f.write(" ".join(argv) + "\n")
    mode = state.get("mode", "ok")
    if mode == "hang":
        time.sleep(3600)
    if mode != "ok":
        sys.stdout.write((FIXTURES / f"{mode}.txt").read_text())
        return EXIT.get(mode, 1)
    opts = dict(a.split("=", 1) for a in argv if "=" in a)
    fmt = opts.get("--format", "").split(",")
    if "csv" not in fmt:
        print("Please specify the format with --format=csv")
        return 2
    capture = state.get("capture", "h100-load")
    running = apps(state)
    n = int(state.get("gpus", 1))
    lines = []
    if "--query-gpu" in opts:
        header, rows = recorded(f"{capture}.query-gpu.csv")
        fields = opts["--query-gpu"].split(",")
        cols = [column(header, f) for f in fields]
        base = rows[0].split(", ")
        for i in range(n):
            used = float(state.get("used_mib", 0)) + sum(a.get("mib") or 0 for a in running if a["gpu"] == i)
            total = float(unitless(base[column(header, "memory.total")]))
            live = {"index": str(i), "uuid": uuid(i), "memory.used": f"{used:.0f} MiB",
                    "memory.free": f"{total - used:.0f} MiB"}
            lines.append([live.get(f, base[c]) for f, c in zip(fields, cols)])
    elif "--query-compute-apps" in opts:
        header, rows = recorded(f"{capture}.compute-apps.csv")
        fields = opts["--query-compute-apps"].split(",")
        cols = [column(header, f) for f in fields]
        base = rows[0].split(", ") if rows else [""] * len(header)
        for a in running:
            mib = a.get("mib")
            live = {"pid": str(a["pid"]), "gpu_uuid": uuid(a["gpu"]), "process_name": a.get("name", "python"),
                    "used_memory": "[N/A]" if mib is None else f"{mib:.0f} MiB"}
            live["used_gpu_memory"] = live["used_memory"]
            lines.append([live.get(f, live.get(ALIASES.get(f, f), base[c])) for f, c in zip(fields, cols)])
    else:
        print("lab's stand-in nvidia-smi answers --query-gpu and --query-compute-apps only")
        return 2
    if "noheader" not in fmt:
        print(", ".join(header[c] for c in cols))
    for row in lines:
        print(", ".join(unitless(v) if "nounits" in fmt else v for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
