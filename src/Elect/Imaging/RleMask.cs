namespace Elect.Imaging;

/// <summary>PIE-Bench run-length masks (the <c>mask</c> field of <c>mapping_file.json</c>).</summary>
public static class RleMask
{
    /// <summary>
    /// Decodes like PIE-Bench's <c>mask_decode(encoded_mask, image_shape=[512,512])</c> (cure-lab/PnPInversion,
    /// evaluation/evaluate.py): pairs <c>(start, length)</c> over the row-major flattened H x W grid set
    /// <c>min(length, H*W - start)</c> cells from <c>start</c>; then, "to avoid annotation errors in boundary", the first and
    /// last row and column are set as well (<paramref name="markBorder"/>; pass false for the ELECT repository's
    /// <c>rle_decode</c>, which does not). Returns [height, width], true = edited region.
    /// </summary>
    /// <exception cref="ArgumentException">an odd number of values, or a negative start or length.</exception>
    public static bool[,] Decode(IReadOnlyList<int> rle, int height = 512, int width = 512, bool markBorder = true)
    {
        ArgumentNullException.ThrowIfNull(rle);
        if (height < 1 || width < 1) throw new ArgumentException($"mask size must be positive (got {width}x{height})");
        if (rle.Count % 2 != 0) throw new ArgumentException($"RLE mask has an odd number of values ({rle.Count}); expected (start, length) pairs");
        long length = (long)height * width;
        var mask = new bool[height, width];
        for (int i = 0; i < rle.Count; i += 2)
        {
            long start = rle[i], run = rle[i + 1];
            if (start < 0 || run < 0) throw new ArgumentException($"RLE mask pair {i / 2} has a negative value ({start}, {run})");
            long n = Math.Min(run, length - start);
            for (long j = 0; j < n; j++)
            {
                long p = start + j;
                mask[p / width, p % width] = true;
            }
        }
        if (markBorder)
        {
            for (int x = 0; x < width; x++) mask[0, x] = mask[height - 1, x] = true;
            for (int y = 0; y < height; y++) mask[y, 0] = mask[y, width - 1] = true;
        }
        return mask;
    }

    /// <summary><see cref="Decode"/> as an image: 255 inside the mask, 0 outside.</summary>
    public static GrayImage DecodeImage(IReadOnlyList<int> rle, int height = 512, int width = 512, bool markBorder = true)
    {
        var m = Decode(rle, height, width, markBorder);
        var g = new GrayImage(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                if (m[y, x]) g.Data[y * width + x] = 255;
        return g;
    }
}
