"""VALUE-mini: a small synthetic data set written in the real VALUE formats.

``make_demo_data(out)`` writes Flickr30k Entities, Visual Genome, BUTD region features,
rendered images and the ten SentEval probing files for the same synthetic scenes, so that the
real readers load it and every experiment runs end to end without the real data.
"""

from vlprobe.synthetic.demo import DemoDataPaths, make_demo_data

__all__ = ["DemoDataPaths", "make_demo_data"]
