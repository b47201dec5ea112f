"""Training: on-the-fly data (data, augment), losses, SpeechBrain Brain subclasses, the train entry.

    from audiokit.tasks.train import train
    train("recipes/enhancement/frcrn_causal_small.yaml", ["--output_folder", "results/x"])
"""
