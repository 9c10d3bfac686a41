"""Task models built from rnnkit.nn: the character language model, tagger, classifier, encoder-decoder."""
