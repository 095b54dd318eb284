"""Noisy user tags for the ``mosaic-tags`` dataset: the NUS-WIDE-style auxiliary semantics.

The vocabulary has a few words per class (its name and synonyms, ``CLASS_WORDS``) and a few
hundred distractor words of the kind photo-sharing users add (places, years, cameras, moods).
Each mosaic's tags, drawn independently per mosaic:
- each true class is tagged with probability ``KEEP`` (0.7): its name, or with probability
  ``SYNONYM`` (0.4) one of its synonyms; with probability ``CONFUSE`` (0.1) the word comes from
  another, randomly chosen class instead (a mistaken tag);
- Poisson(``DISTRACTORS``) (mean 3) distractor tags, drawn with Zipf-like popularity
  (weight 1 / rank), as real tag frequencies are.
``aux`` is the multi-hot over the vocabulary; ``tags_to_classes`` maps it back to classes (a class
is predicted when any of its words is tagged) for the precision / recall recorded in ``info``.

What the tags carry (default build, training split): 4.2 tags per mosaic, 1.3 of them class words.
The distractors' head is heavy: the most popular words are on 39% ("nikon") and 22% ("canon") of
the mosaics. 26% of the pairs share a distractor and 8% a class word; of the pairs sharing a class
word 90% share a true class, of those sharing any tag 46% (37% of all pairs do). A tag-overlap
graph is therefore a weak, noisy similarity: retrieval by the tags alone (``aux-only``, 32 bits)
scores MAP@1000 0.573 where LSH on the features scores 0.774.
"""

from __future__ import annotations

import numpy as np

from hashbench.datasets.base import SPLIT_NAMES

KEEP = 0.7
SYNONYM = 0.4
CONFUSE = 0.1
DISTRACTORS = 3.0

CLASS_WORDS = (
    ("tshirt", "tee", "top", "teeshirt", "casual"),
    ("trousers", "pants", "jeans", "slacks", "chinos"),
    ("pullover", "sweater", "jumper", "knitwear", "sweatshirt"),
    ("dress", "gown", "frock", "sundress", "eveningdress"),
    ("coat", "jacket", "overcoat", "parka", "outerwear"),
    ("sandal", "sandals", "flipflops", "slides", "summershoes"),
    ("shirt", "blouse", "buttondown", "flannel", "oxford"),
    ("sneaker", "sneakers", "trainers", "runningshoes", "kicks"),
    ("bag", "handbag", "purse", "tote", "backpack"),
    ("boots", "ankleboots", "booties", "chelsea", "leatherboots"),
)
_DISTRACTOR_TEXT = """
nikon canon sony fuji olympus pentax leica iphone samsung lumix dslr lens bokeh macro zoom tripod
flash longexposure hdr blackandwhite bw monochrome sepia vintage retro film analog polaroid lomo
square cropped portrait landscape closeup detail abstract minimal texture pattern shadow light
sunlight sunset sunrise night dusk dawn morning evening afternoon winter spring summer autumn fall
snow rain fog cloudy sunny storm wind ice frost beach sea ocean lake river mountain hill forest
park garden city street urban downtown building architecture bridge tower church castle museum
market shop store mall window door wall floor table chair room home house kitchen bedroom office
studio party wedding birthday holiday christmas halloween vacation travel trip roadtrip weekend
friends family me selfie girl boy woman man kids baby people crowd model fashion style outfit
shopping sale new old cheap expensive gift present love happy fun cool cute pretty beautiful
awesome amazing favorite best nice lovely funny weird random everyday life daily diary project
challenge explore interesting flickr photo photography picture image pic snapshot upload camera
art design creative color colour colorful red blue green yellow orange purple pink white black
grey brown gold silver dark bright soft warm cold clean dirty wet dry wood metal glass plastic
paper cotton wool leather denim silk linen london paris newyork tokyo berlin rome madrid amsterdam
barcelona sydney toronto chicago boston seattle california texas florida europe asia usa uk japan
germany france italy spain canada australia 1999 2000 2001 2002 2003 2004 2005 2006 2007 2008
2009 2010 2011 2012 2013 2014 2015 dog cat bird flower tree grass sky cloud water fire car bike
train bus plane boat road sign text logo brand label tag price hanger closet wardrobe laundry
"""
DISTRACTOR_WORDS = tuple(_DISTRACTOR_TEXT.split())
VOCABULARY = tuple(w for words in CLASS_WORDS for w in words) + DISTRACTOR_WORDS
_CLASS_OF_WORD = np.repeat(np.arange(len(CLASS_WORDS)), [len(w) for w in CLASS_WORDS])


def add_tags(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """Replace the train / query / database ``aux`` in ``arrays`` by tags; return the vocabulary."""
    for split in SPLIT_NAMES:
        arrays[f"{split}_aux"] = draw_tags(arrays[f"{split}_labels"], rng)
    return list(VOCABULARY)


def draw_tags(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multi-hot tags (n, len(VOCABULARY)) float32 for multi-hot class labels (n, n_classes)."""
    n, n_classes = labels.shape
    words_per_class = len(CLASS_WORDS[0])
    tags = np.zeros((n, len(VOCABULARY)), np.float32)
    rows, classes = np.nonzero(labels)
    kept = rng.random(len(rows)) < KEEP
    confused = rng.random(len(rows)) < CONFUSE
    other = (classes + rng.integers(1, n_classes, len(rows))) % n_classes
    word_class = np.where(confused, other, classes)
    synonym = rng.random(len(rows)) < SYNONYM
    word = np.where(synonym, rng.integers(1, words_per_class, len(rows)), 0)
    tags[rows[kept], (word_class * words_per_class + word)[kept]] = 1
    n_distractors = rng.poisson(DISTRACTORS, n)
    popularity = 1.0 / np.arange(1, len(DISTRACTOR_WORDS) + 1)
    picks = rng.choice(len(DISTRACTOR_WORDS), size=n_distractors.sum(), p=popularity / popularity.sum())
    tags[np.repeat(np.arange(n), n_distractors), len(_CLASS_OF_WORD) + picks] = 1
    return tags


def tags_to_classes(tags: np.ndarray) -> np.ndarray:
    """bool (n, n_classes): a class is predicted when any of its words is among the tags."""
    class_tags = np.asarray(tags)[:, : len(_CLASS_OF_WORD)] > 0
    predicted = np.zeros((len(class_tags), len(CLASS_WORDS)), bool)
    for c in range(len(CLASS_WORDS)):
        predicted[:, c] = class_tags[:, _CLASS_OF_WORD == c].any(axis=1)
    return predicted
