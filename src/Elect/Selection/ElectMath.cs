using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Selection;

/// <summary>
/// The ELECT quantities, all as batched device tensor ops (no host synchronisation):
/// per-candidate noise-difference maps, the running relevance map, Tweedie estimates and the
/// Background Inconsistency Score.
/// </summary>
public static class ElectMath
{
    /// <summary>
    /// numpy <c>percentile(x, q, method="midpoint")</c> of each row of <paramref name="sortedRows"/>
    /// (already sorted ascending along dim 1), shape [n] → [n, 1].
    /// </summary>
    public static Tensor MidpointPercentile(Tensor sortedRows, double q)
    {
        long count = sortedRows.shape[1];
        double virtualIndex = (count - 1) * q / 100.0;
        long lo = (long)Math.Floor(virtualIndex), hi = (long)Math.Ceiling(virtualIndex);
        var a = sortedRows.narrow(1, lo, 1);
        if (lo == hi) return a;
        var b = sortedRows.narrow(1, hi, 1);
        return b - (b - a) * 0.5; // numpy's lerp for t >= 0.5: b - (b - a) * (1 - t)
    }

    /// <summary>Min-max normalises each row of [n, k] to [0, 1] (a constant row becomes 0).</summary>
    public static Tensor MinMaxRows(Tensor rows)
    {
        var min = rows.amin([1], keepdim: true);
        var max = rows.amax([1], keepdim: true);
        var den = max - min;
        return (rows - min) / torch.where(den > 0, den, torch.ones_like(den));
    }

    /// <summary>
    /// The reference's <c>get_noise_diff</c> for a batch: d = Σ_c |eps_text − eps_image| per candidate,
    /// clipped to [0, Q3 + 1.5·IQR] (midpoint percentiles) and min-max normalised. [n,C,h,w] → [n,h,w] float32.
    /// </summary>
    public static Tensor NoiseDifference(Tensor epsText, Tensor epsImage)
    {
        using var scope = torch.NewDisposeScope();
        long n = epsText.shape[0], h = epsText.shape[2], w = epsText.shape[3];
        var d = (epsText.to(ScalarType.Float32) - epsImage.to(ScalarType.Float32)).abs_().sum(1).reshape(n, h * w);
        var (sorted, _) = d.sort(1);
        var q1 = MidpointPercentile(sorted, 25);
        var q3 = MidpointPercentile(sorted, 75);
        var up = q3 + (q3 - q1) * 1.5;
        d = torch.minimum(d.clamp_min(0), up);
        return MinMaxRows(d).reshape(n, h, w).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The step's mask from the candidates' normalised differences [n,h,w]: mean over candidates,
    /// squared (sharpening), min-max normalised → [h,w].
    /// </summary>
    public static Tensor StepMask(Tensor noiseDiffs)
    {
        using var scope = torch.NewDisposeScope();
        long h = noiseDiffs.shape[1], w = noiseDiffs.shape[2];
        var m = noiseDiffs.mean([0]).pow(2).reshape(1, h * w);
        return MinMaxRows(m).reshape(h, w).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The reference's running mean: the first accumulated mask is taken as is, later ones as
    /// <c>(M·i + m)/(i+1)</c> with i the step index. Returns a new tensor; the caller disposes the old.
    /// </summary>
    public static Tensor Accumulate(Tensor? running, Tensor stepMask, int stepIndex) =>
        running is null ? stepMask.clone() : (running * stepIndex + stepMask) / (stepIndex + 1);

    /// <summary>Bilinear resize (half-pixel centres) of an [h,w] map to [H,W].</summary>
    public static Tensor ResizeMap(Tensor map, long height, long width)
    {
        using var x = map.to(ScalarType.Float32).unsqueeze(0).unsqueeze(0);
        using var y = nn.functional.interpolate(x, [height, width], mode: InterpolationMode.Bilinear, align_corners: false);
        return y.squeeze(0).squeeze(0);
    }

    /// <summary>
    /// Background Inconsistency Score of each decoded estimate [n,3,H,W] against the decoded input
    /// [1,3,H,W] (both in [-1,1]) outside the relevance map [h,w]:
    /// Σ(mean_rgb|in − est| · (1 − M↑)) / Σ(1 − M↑). Returns float32 [n] on the device.
    /// </summary>
    public static Tensor Bis(Tensor decodedInput, Tensor decodedEstimates, Tensor relevance)
    {
        using var scope = torch.NewDisposeScope();
        long H = decodedEstimates.shape[2], W = decodedEstimates.shape[3];
        var background = ResizeMap(1f - relevance.to(ScalarType.Float32), H, W);
        var diff = (decodedInput.to(ScalarType.Float32) - decodedEstimates.to(ScalarType.Float32)).abs_().mean([1]);
        var score = (diff * background).sum([1, 2]) / background.sum();
        return score.MoveToOuterDisposeScope();
    }
}
