"""Reads the combined output of `dotnet test` and pytest for one environment and prints 'passed failed skipped'.

Usage: summarize_tests.py LOG EXIT_CODE. Before the counts it prints one 'FAILED name: first message line' per failed
test, so that the last lines of a CI log always say which tests failed and why. A non-zero exit code with no failed test counted (a crash, a build
problem, a runner that died) is reported as one failure, so it can never pass silently.
"""
import re
import sys

text = open(sys.argv[1], errors="replace").read()
passed = failed = skipped = 0
# dotnet test (VSTest) closes each test assembly with "Total tests: N" then "Passed: N", "Failed: N", "Skipped: N".
for block in re.split(r"^Total tests:", text, flags=re.M)[1:]:
    for word, n in re.findall(r"^\s+(Passed|Failed|Skipped): (\d+)\s*$", block, flags=re.M)[:3]:
        if word == "Passed":
            passed += int(n)
        elif word == "Failed":
            failed += int(n)
        else:
            skipped += int(n)
# pytest closes with e.g. "12 passed, 1 skipped in 0.53s" (possibly wrapped in '=').
for line in text.splitlines():
    if re.search(r"\b\d+ (passed|failed|skipped|errors?)\b.* in [\d.]+s", line):
        for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", line):
            if word == "passed":
                passed += int(n)
            elif word == "skipped":
                skipped += int(n)
            else:
                failed += int(n)
# VSTest: "  Failed Name [12 ms]" then "  Error Message:" and the message; pytest -q: "FAILED path::name - message".
lines = text.splitlines()
for i, line in enumerate(lines):
    m = re.match(r"^\s+Failed (\S.*?) \[[^\]]*\]\s*$", line)
    if m:
        message = ""
        if i + 2 < len(lines) and lines[i + 1].strip() == "Error Message:":
            message = lines[i + 2].strip()
        print(f"FAILED {m.group(1)}: {message[:300]}")
    elif line.startswith("FAILED "):
        print(line[:400])
if sys.argv[2] != "0" and failed == 0:
    failed = 1
print(passed, failed, skipped)
