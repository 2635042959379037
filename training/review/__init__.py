"""Review: base and tuned outputs side by side, blind battles, win rates and the leaderboard.

- ``versions``: which model versions a review compares (and ``ReviewError``)
- ``generation``: generation jobs (candidates for labeling, review outputs); ``generation_batches`` makes a job's
  missing completions batch by batch, ``stored_outputs`` says which exist, ``candidate_pairs`` pairs candidates
- ``comparisons``: what makes two outputs comparable (identical generation settings), and their names
- ``matched_outputs``: the comparisons two versions have outputs in, and their matched pairs
- ``evaluation``: after a review job: did the model move, then blind battles or held-out thumbs
- ``battles``: blind review pairs between two versions' matched outputs
- ``selectors`` and ``figures``: reads and number formatting for the pages, with reads of their own in
  ``side_by_side``, ``movement``, ``degeneration``, ``results``, ``leaderboard`` and ``candidate_expectation``;
  ``forms`` and ``views``: the screens
"""
