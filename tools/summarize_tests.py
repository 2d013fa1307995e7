"""Reads the combined output of `dotnet test` and pytest for one environment and prints 'passed failed skipped'.

Usage: summarize_tests.py LOG EXIT_CODE. A non-zero exit code with no failed test counted (a crash, a build
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
if sys.argv[2] != "0" and failed == 0:
    failed = 1
print(passed, failed, skipped)
