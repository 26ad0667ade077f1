"""Monitoring a champion on new drops: input drift, prediction drift, decay, and the retrain policy.

`result` holds the typed results, `stats` the two-sample tests, `descriptors` the text descriptors, `core` runs a
drop through the champion, `policy` decides, `report` renders the HTML report, `history` records and plots results.
"""
