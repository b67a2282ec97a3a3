"""napari plugin: a thin layer that turns layers into arrays, calls the core, and turns results into layers."""
