"""Training-set augmentation: WordNet synonyms, back-translation, output filters, an on-disk cache.

Heavy resources (WordNet, spaCy, translation engines) load only when an augmentation runs.
"""
