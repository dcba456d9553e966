"""The tiny shapes-and-styles world and the MS-COCO data preparation."""
