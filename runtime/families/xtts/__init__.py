"""The XTTS-v2 family (coqui-tts): voice cloning from reference recordings, streamed by GPT
token chunks, 24 kHz. Its libraries come with ``tailor-deploy[xtts]``; importing this package
imports none of them (:func:`runtime.families.xtts.loader.load` does).

Modules: ``loader`` (checkpoint directory -> engine), ``engine`` (:class:`XttsEngine`),
``voices`` (reference recordings and the cloned-voice cache), ``errors``, ``tiny`` (random-weight
checkpoints for tests and benchmarks) and ``_coqui`` (the one place coqui-tts is imported).

The weights are under the Coqui Public Model License: non-commercial use only.
"""
