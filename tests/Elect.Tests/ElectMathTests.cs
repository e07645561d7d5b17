using Elect.Modeling;
using Elect.Selection;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

public class ElectMathTests
{
    public ElectMathTests() => TorchRuntime.Initialize();

    [Fact]
    public void MidpointPercentileMatchesNumpy()
    {
        // numpy: np.percentile([3,1,4,1,5,9,2,6], 25, method="midpoint") == 1.5; 75 -> 5.5
        using var sorted = tensor(new float[] { 3, 1, 4, 1, 5, 9, 2, 6 }).reshape(1, 8).sort(1).Values;
        Assert.Equal(1.5f, ElectMath.MidpointPercentile(sorted, 25).item<float>());
        Assert.Equal(5.5f, ElectMath.MidpointPercentile(sorted, 75).item<float>());
        // (n-1)*q integral: np.percentile(range(5), 25, method="midpoint") == 1.0
        using var five = arange(5, dtype: ScalarType.Float32).reshape(1, 5);
        Assert.Equal(1f, ElectMath.MidpointPercentile(five, 25).item<float>());
    }

    [Fact]
    public void NoiseDifferenceClipsOutliersAndNormalisesPerCandidate()
    {
        // one candidate, one channel, 2x4 map: |text - image| = [0,1,2,3,4,5,6,100]
        using var text = tensor(new float[] { 0, 1, 2, 3, 4, 5, 6, 100 }).reshape(1, 1, 2, 4);
        using var image = zeros(1, 1, 2, 4);
        using var d = ElectMath.NoiseDifference(cat([text, text * 2], 0), cat([image, image], 0));
        // Q1 = 1.5, Q3 = 5.5 -> upper limit 11.5: 100 is clipped to 11.5; min-max -> x / 11.5
        var row = d[0].flatten().data<float>().ToArray();
        Assert.Equal(1f, row[7], 6);
        Assert.Equal(6f / 11.5f, row[6], 6);
        Assert.Equal(0f, row[0], 6);
        // the second candidate is the first scaled by 2: the same normalised map
        TensorAssert.Close(d[0], d[1], 1e-6, "scale invariance");
    }

    [Fact]
    public void RelevanceRunningMeanFollowsReference()
    {
        using var m0 = tensor(new float[] { 0, 1 }).reshape(1, 2);
        using var m1 = tensor(new float[] { 1, 0 }).reshape(1, 2);
        using var first = ElectMath.Accumulate(null, m0, 3);   // first map is taken as is, whatever its step
        TensorAssert.Close(m0, first, 0, "first");
        using var second = ElectMath.Accumulate(first, m1, 4);  // (M*4 + m)/5
        TensorAssert.Close(tensor(new float[] { 0.2f, 0.8f }).reshape(1, 2), second, 1e-7, "second");
    }

    [Fact]
    public void StepMaskSquaresTheCandidateMeanAndNormalises()
    {
        using var diffs = tensor(new float[] { 0, 0.5f, 1, 1, 0.5f, 1 }).reshape(2, 1, 3);
        using var m = ElectMath.StepMask(diffs); // mean = [0.5,0.5,1] -> squared [0.25,0.25,1] -> [0,0,1]
        TensorAssert.Close(tensor(new float[] { 0, 0, 1 }).reshape(1, 3), m, 1e-7, "mask");
        using var flat = ElectMath.StepMask(ones(2, 2, 2)); // constant map: zeros, not NaN
        Assert.Equal(0f, flat.abs().sum().item<float>());
    }

    [Fact]
    public void BisWeighsOnlyTheBackground()
    {
        using var input = zeros(1, 3, 4, 4);
        // candidate 0 differs only where the relevance map is 1 (left half), candidate 1 everywhere by 0.5
        using var c0 = zeros(1, 3, 4, 4);
        c0[.., .., .., 0..2] = tensor(1f);
        using var c1 = full(1, 3, 4, 4, 0.5f);
        using var relevance = tensor(new float[,] { { 1, 1, 0, 0 }, { 1, 1, 0, 0 }, { 1, 1, 0, 0 }, { 1, 1, 0, 0 } });
        using var bis = ElectMath.Bis(input, cat([c0, c1], 0), relevance);
        var s = bis.data<float>().ToArray();
        Assert.Equal(0f, s[0], 6);
        Assert.Equal(0.5f, s[1], 6);
    }
}
