"""Review: base and tuned outputs side by side, blind battles, win rates and the leaderboard.

- ``versions``: which model versions a review compares (and ``ReviewError``)
- ``generation``: generation jobs (candidates for labeling, review outputs)
- ``battles``: blind review pairs between two versions
- ``selectors``: reads for the pages; ``forms`` and ``views``: the admin screens
"""
