# "2026‑12‑07 04:51", not English's "Dec. 7, 2026, 4:51 a.m.": beside the admin's sidebar and filters a change
# list's date column is a few words wide, and the long form wrapped into five lines a row (issue 26's screens).
# The hyphens are non-breaking ones (U+2011): Chromium broke "2026-12-07" at plain hyphens into three lines, and
# the column has no room to keep date and time on one, so it breaks at the space only.
DATETIME_FORMAT = "Y\u2011m\u2011d H:i"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y\u2011m\u2011d"
SHORT_DATE_FORMAT = DATE_FORMAT
