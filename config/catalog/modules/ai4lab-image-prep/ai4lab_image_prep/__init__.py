"""ai4lab-image-prep: any image of one digit -> the small grayscale image a digits classifier takes."""

NAME = "ai4lab-image-prep"
