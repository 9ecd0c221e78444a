"""The CUPS printer: `lp` submits a label PDF; `ipptool` reads queue and job state over IPP.

Why ipptool and not `lpstat` for reading: lpstat prints localised prose, never a job's title
and never its state (its "Alerts" line even says `processing-to-stop-point` for a job that
completed), and `lpstat -r` exits 0 even when cupsd is down. IPP's `job-state` enum,
`job-name`, `printer-state` and `printer-is-accepting-jobs` are exact, and `ipptool -X` prints
them as a plist the standard library parses. ipptool ships with CUPS (Debian's cups-ipp-utils,
pulled in by `cups`). Every program runs without a shell, arguments as a list, so a title or
option reaches CUPS as one literal value.
"""
