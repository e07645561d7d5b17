using Elect.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Evaluation;

/// <summary>
/// The pixel metrics of PIE-Bench's evaluation (cure-lab/PnPInversion, evaluation/matrics_calculator.py), with
/// torchmetrics' formulas: <c>PeakSignalNoiseRatio(data_range=1.0)</c>, <c>MeanSquaredError()</c> and
/// <c>StructuralSimilarityIndexMeasure(data_range=1.0)</c> (gaussian 11x11 window, sigma 1.5, k1 0.01, k2 0.03,
/// reflect padding, the padded border cropped from the SSIM map before averaging). Images are [N,3,H,W] float
/// in [0,1] (the reference's <c>np.array(img) / 255</c>, times the mask when one is given); each value is the
/// batch mean, as a torchmetrics module's forward returns it.
/// </summary>
public static class ImageMetrics
{
    /// <summary>An 8-bit image as float32 [1,3,H,W] in [0,1] (<c>np.array(img).astype(np.float32) / 255</c>).</summary>
    public static Tensor ToUnit(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int hw = image.Width * image.Height;
        var buf = new float[3 * hw];
        for (int i = 0; i < hw; i++)
            for (int c = 0; c < 3; c++)
                buf[c * hw + i] = image.Data[i * 3 + c] / 255f;
        return torch.tensor(buf, new long[] { 1, 3, image.Height, image.Width }, ScalarType.Float32);
    }

    /// <summary>A mask [H,W] (true = 1) as float32 [1,1,H,W], to multiply images with.</summary>
    public static Tensor MaskTensor(bool[,] mask, bool invert = false)
    {
        ArgumentNullException.ThrowIfNull(mask);
        int h = mask.GetLength(0), w = mask.GetLength(1);
        var buf = new float[h * w];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                buf[y * w + x] = mask[y, x] ^ invert ? 1f : 0f;
        return torch.tensor(buf, new long[] { 1, 1, h, w }, ScalarType.Float32);
    }

    private static void CheckPair(Tensor pred, Tensor target, string metric)
    {
        ArgumentNullException.ThrowIfNull(pred);
        ArgumentNullException.ThrowIfNull(target);
        if (!pred.shape.SequenceEqual(target.shape))
            throw new ArgumentException($"{metric}: image shapes differ ([{string.Join(",", pred.shape)}] vs [{string.Join(",", target.shape)}])");
        if (pred.dim() != 4) throw new ArgumentException($"{metric}: images must be [N,C,H,W], got [{string.Join(",", pred.shape)}]");
    }

    /// <summary>torchmetrics <c>MeanSquaredError</c>: the mean of the squared differences over every element.</summary>
    public static double Mse(Tensor pred, Tensor target)
    {
        CheckPair(pred, target, "MSE");
        using var scope = torch.NewDisposeScope();
        var d = pred.to(ScalarType.Float64) - target.to(ScalarType.Float64);
        return (d * d).mean().item<double>();
    }

    /// <summary>
    /// torchmetrics <c>PeakSignalNoiseRatio(data_range)</c>: <c>10 log10(range^2 / MSE)</c> over every element
    /// (infinity for identical images).
    /// </summary>
    public static double Psnr(Tensor pred, Tensor target, double dataRange = 1.0)
    {
        CheckPair(pred, target, "PSNR");
        double mse = Mse(pred, target);
        return 10.0 * Math.Log10(dataRange * dataRange / mse);
    }

    /// <summary>torchmetrics' <c>_gaussian</c>: <c>exp(-((i - (k-1)/2)/sigma)^2 / 2)</c>, normalised to sum 1.</summary>
    public static double[] Gaussian1d(int kernelSize, double sigma)
    {
        var g = new double[kernelSize];
        double sum = 0;
        for (int i = 0; i < kernelSize; i++)
        {
            double d = (1 - kernelSize) / 2.0 + i;
            g[i] = Math.Exp(-(d / sigma) * (d / sigma) / 2);
            sum += g[i];
        }
        for (int i = 0; i < kernelSize; i++) g[i] /= sum;
        return g;
    }

    /// <summary>
    /// torchmetrics <c>StructuralSimilarityIndexMeasure(data_range)</c> with its defaults: the 2-D gaussian window
    /// (outer product of <see cref="Gaussian1d"/>), both images reflect-padded by (k-1)/2, local means, variances and
    /// covariance by a grouped convolution, <c>((2 mu_xy + c1)(2 s_xy + c2)) / ((mu_x^2 + mu_y^2 + c1)(s_x + s_y + c2))</c>,
    /// the padded border cropped, mean per image, mean over the batch.
    /// </summary>
    public static double Ssim(Tensor pred, Tensor target, double dataRange = 1.0, int kernelSize = 11, double sigma = 1.5,
                              double k1 = 0.01, double k2 = 0.03)
    {
        CheckPair(pred, target, "SSIM");
        if (kernelSize < 1 || kernelSize % 2 == 0) throw new ArgumentException($"SSIM: kernel size must be odd and positive, got {kernelSize}");
        long n = pred.shape[0], ch = pred.shape[1], h = pred.shape[2], w = pred.shape[3];
        int pad = (kernelSize - 1) / 2;
        if (h <= pad || w <= pad) throw new ArgumentException($"SSIM: image {w}x{h} is too small for an {kernelSize}x{kernelSize} window");
        using var scope = torch.NewDisposeScope();
        var g = Gaussian1d(kernelSize, sigma);
        var k2d = new double[kernelSize * kernelSize];
        for (int i = 0; i < kernelSize; i++)
            for (int j = 0; j < kernelSize; j++)
                k2d[i * kernelSize + j] = g[i] * g[j];
        var kernel = torch.tensor(k2d, new long[] { 1, 1, kernelSize, kernelSize }, ScalarType.Float64).expand(ch, 1, kernelSize, kernelSize);
        double c1 = Math.Pow(k1 * dataRange, 2), c2 = Math.Pow(k2 * dataRange, 2);
        var p = nn.functional.pad(pred.to(ScalarType.Float64), [pad, pad, pad, pad], PaddingModes.Reflect);
        var t = nn.functional.pad(target.to(ScalarType.Float64), [pad, pad, pad, pad], PaddingModes.Reflect);
        var stack = torch.cat([p, t, p * p, t * t, p * t]);
        var o = nn.functional.conv2d(stack, kernel, groups: ch).split(n);
        var muP2 = o[0].pow(2);
        var muT2 = o[1].pow(2);
        var muPT = o[0] * o[1];
        var sP = o[2] - muP2;
        var sT = o[3] - muT2;
        var sPT = o[4] - muPT;
        var upper = 2 * sPT + c2;
        var lower = sP + sT + c2;
        var map = (2 * muPT + c1) * upper / ((muP2 + muT2 + c1) * lower);
        var cropped = map[.., .., pad..^pad, pad..^pad];
        return cropped.reshape(n, -1).mean([1]).mean().item<double>();
    }
}
