"""``python -m seglab.plugin``: open napari with a sample image and the Segment and Train widgets."""

import napari


def main() -> None:
    viewer = napari.Viewer(title="napari-seglab")
    viewer.open_sample("napari-seglab", "fluorescence")
    viewer.window.add_plugin_dock_widget("napari-seglab", "Segment")
    viewer.window.add_plugin_dock_widget("napari-seglab", "Train")
    napari.run()


if __name__ == "__main__":
    main()
