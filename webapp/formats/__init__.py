"""Date formats for the pages that print a date without saying how (the Django admin's lists): the app's own pages
format theirs in their templates."""
