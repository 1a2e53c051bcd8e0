"""A plain script that prints its metrics, and whatever bytes its settings ask for (bad output).

A test program: no lab import; tests/runs/test_capture.py runs it through `lab run --wait`.
"""
import json
import sys
s = json.load(open(sys.argv[1]))
out = sys.stdout.buffer
out.write(bytes.fromhex(s.get("before", "")))
for step in range(1, s.get("steps", 5) + 1):
    out.write(f"step {step}: loss={1 / step:.4f} accuracy={step / 10}\n".encode())
out.write(bytes.fromhex(s.get("after", "")))
for i in range(s.get("names", 0)):
    out.write(f"m{i}=1\n".encode())
out.flush()
