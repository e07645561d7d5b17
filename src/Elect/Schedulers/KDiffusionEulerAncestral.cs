using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Schedulers;

/// <summary>
/// k-diffusion's Euler-ancestral sampler (<c>sample_euler_ancestral</c> as InstructDiffusion's pipeline
/// inlines it, eta 1, s_noise 1) over a <c>CompVisDenoiser(quantize=False)</c> schedule: sigmas
/// <c>sqrt((1 - alphas_cumprod) / alphas_cumprod)</c> of the model's float32 <c>alphas_cumprod</c>,
/// <c>get_sigmas(n)</c> = <c>t_to_sigma(linspace(T-1, 0, n))</c> (log-sigma interpolation) with a
/// final 0, model timestep <c>sigma_to_t(sigma)</c> (non-integer), model input scaled by
/// <c>1 / sqrt(sigma^2 + 1)</c>, epsilon prediction. Every table is computed with torch float32 ops in
/// the reference's order, so the values match it bit for bit on the CPU.
/// </summary>
public sealed class KDiffusionEulerAncestral : IDenoisingScheduler
{
    private readonly float[] _sigmas;     // n + 1, last 0
    private readonly float[] _timesteps;  // n
    private readonly float[] _cIn;        // n
    private readonly float[] _sigmaUp;    // n
    private readonly float[] _sigmaDown;  // n

    /// <param name="alphasCumprod">The model's <c>alphas_cumprod</c> buffer (converted to float32 here).</param>
    /// <param name="steps">Inference steps n.</param>
    public KDiffusionEulerAncestral(Tensor alphasCumprod, int steps)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), "at least one inference step");
        if (alphasCumprod.dim() != 1 || alphasCumprod.shape[0] < 2)
            throw new ArgumentException("alphas_cumprod must be a 1-D table of at least two timesteps", nameof(alphasCumprod));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ac = alphasCumprod.to(ScalarType.Float32).cpu();
        var allSigmas = ((1 - ac) / ac).pow(0.5);
        var logSigmas = allSigmas.log();
        long tMax = logSigmas.shape[0] - 1;

        // get_sigmas(n): t_to_sigma(linspace(t_max, 0, n)), append_zero
        var t = linspace(tMax, 0, steps, dtype: ScalarType.Float32);
        var low = t.floor().to(ScalarType.Int64);
        var high = t.ceil().to(ScalarType.Int64);
        var w = t.frac();
        var logSigma = (1 - w) * logSigmas.index(low) + w * logSigmas.index(high);
        var sigmas = cat([logSigma.exp(), zeros(1)], 0);
        _sigmas = sigmas.data<float>().ToArray();

        // sigma_to_t of each step's sigma (as the denoiser calls it on the sigma it is given)
        var s = sigmas[..steps];
        var ls = s.log();
        var dists = ls - logSigmas.unsqueeze(1);
        var lowIdx = dists.ge(0).cumsum(0).argmax(0).clamp(max: tMax - 1);
        var highIdx = lowIdx + 1;
        var lo = logSigmas.index(lowIdx);
        var hi = logSigmas.index(highIdx);
        var ww = ((lo - ls) / (lo - hi)).clamp(0, 1);
        var ts = (1 - ww) * lowIdx + ww * highIdx;
        _timesteps = ts.to(ScalarType.Float32).data<float>().ToArray();

        // c_in = 1 / (sigma^2 + sigma_data^2)^0.5
        _cIn = (1 / (s.pow(2) + 1).pow(0.5)).data<float>().ToArray();

        // get_ancestral_step(sigma_from, sigma_to, eta=1) on the 0-d float32 sigmas
        _sigmaUp = new float[steps];
        _sigmaDown = new float[steps];
        for (int i = 0; i < steps; i++)
        {
            var from = sigmas[i];
            var to = sigmas[i + 1];
            var up = (to.pow(2) * (from.pow(2) - to.pow(2)) / from.pow(2)).pow(0.5) * 1.0f;
            up = minimum(to, up);   // python min(a, b): b if b < a else a; equal values are equal
            var down = (to.pow(2) - up.pow(2)).pow(0.5);
            _sigmaUp[i] = up.item<float>();
            _sigmaDown[i] = down.item<float>();
        }
        NumInferenceSteps = steps;
    }

    public int NumInferenceSteps { get; }

    public float Timestep(int stepIndex) => _timesteps[Check(stepIndex)];

    public float Sigma(int stepIndex) => _sigmas[stepIndex];

    public float InitNoiseSigma => _sigmas[0];

    public bool UsesStepNoise => true;

    /// <summary>The scale of the model input at step i: 1 / sqrt(sigma_i^2 + 1).</summary>
    public float InputScale(int stepIndex) => _cIn[Check(stepIndex)];

    public float SigmaUp(int stepIndex) => _sigmaUp[Check(stepIndex)];
    public float SigmaDown(int stepIndex) => _sigmaDown[Check(stepIndex)];

    /// <summary>All sigmas (n + 1, the last 0), for tests.</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    public Tensor ScaleModelInput(Tensor sample, int stepIndex) => sample * _cIn[Check(stepIndex)];

    /// <summary>x0 = x + eps * c_out with c_out = -sigma (the CompVisDenoiser output), float32.</summary>
    public Tensor PredictOriginal(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        using var eps = modelOutput.to(ScalarType.Float32);
        using var scaled = eps * (-_sigmas[Check(stepIndex)]);
        return sample.to(ScalarType.Float32) + scaled;
    }

    /// <summary>
    /// d = (x - x0) / sigma; x += d * (sigma_down - sigma); x += noise * sigma_up when the next sigma is
    /// above 0 (the reference draws no noise for the last step; a noise tensor given there is ignored).
    /// </summary>
    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        Check(stepIndex);
        using var scope = NewDisposeScope();
        float sigma = _sigmas[stepIndex];
        var x = sample.to(ScalarType.Float32);
        var denoised = PredictOriginal(modelOutput, stepIndex, x);
        var d = (x - denoised) / sigma;
        var dt = _sigmaDown[stepIndex] - sigma;
        var next = x + d * dt;
        if (_sigmas[stepIndex + 1] > 0)
        {
            if (noise is null) throw new ArgumentNullException(nameof(noise), "Euler-ancestral steps need a Gaussian draw");
            next = next + noise.to(next.dtype, next.device) * 1.0f * _sigmaUp[stepIndex];
        }
        return next.MoveToOuterDisposeScope();
    }

    private int Check(int stepIndex) =>
        stepIndex >= 0 && stepIndex < NumInferenceSteps ? stepIndex : throw new ArgumentOutOfRangeException(nameof(stepIndex), $"step {stepIndex} outside 0..{NumInferenceSteps - 1}");
}
