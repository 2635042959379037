"""Review: base and tuned outputs side by side, blind battles, win rates and the leaderboard.

- ``versions``: which model versions a review compares (and ``ReviewError``)
- ``generation``: generation jobs (candidates for labeling, review outputs), stored batch by batch
- ``comparisons``: what makes two outputs comparable (identical generation settings), and their names
- ``evaluation``: after a review job: did the model move, then blind battles or held-out thumbs
- ``battles``: blind review pairs between two versions' matched outputs
- ``selectors`` and ``figures``: reads and number formatting for the pages; ``forms`` and ``views``: the screens
"""
