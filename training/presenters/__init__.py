"""How the run pages word and draw what the selectors read: the headline figures, the verdict, the charts.
No queries here: each function takes the rows and series a selector returned."""
