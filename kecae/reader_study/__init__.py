"""The reader study: blinded image sets for radiologists, a small web app that records their calls
in a SQLite database, and the statistics of the paper's Table III.

A study folder, as written by ``kecae reader-study prepare``::

    STUDY/study.sqlite     readers, items, each reader's order, answers, and the truth
                           (pair, direction, intended grade, control or not); never served
    STUDY/images/<id>.png  the blinded images: random ids, pixels only (no PNG text chunks),
                           generated and real images at the same size and encoding
    STUDY/links.txt        each reader's personal link (keep private: a link is its reader's key)
    STUDY/analysis.json    written by ``kecae reader-study analyze`` (with analysis.csv)

Phase 1 shows each image alone and records the reader's KL call (KL-0 / KL-2) and a realism
score (1-5). Phase 2 opens only when phase 1 is complete, because it must name the intended
exchange: it shows the original (the recipient) beside the exchanged image and records whether
the change matches the intended exchange.

The modules: :mod:`~kecae.reader_study.db` (schema, connections), :mod:`.prepare`,
:mod:`.app` (the Flask app and its server), :mod:`.analyze` (Table III); the command is
:mod:`kecae.cli.reader_study`.
"""
