"""Shared network building blocks: the normalised VGG19, the relu4_1 decoder, feature statistics."""
