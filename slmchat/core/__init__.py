"""The app's core: models, engine, store, downloads. Nothing under here imports Qt."""
