"""Training-free VALUE measures over cached arrays (pure numpy functions, no I/O).

- :mod:`.fusion`: multimodal fusion degree (k-means + NMI per layer).
- :mod:`.modality`: modality importance ([CLS] attention mass on text vs image).
- :mod:`.alignment`: heads as zero-parameter phrase->region classifiers; cross-modal share.
- :mod:`.controls`: Hewitt & Liang control tasks and selectivity.
- :mod:`.mdl`: Voita & Titov online code length.
- :mod:`.stats`: mean, std and Student-t confidence intervals over seeds.
"""
