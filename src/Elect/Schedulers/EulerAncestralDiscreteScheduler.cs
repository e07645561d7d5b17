using Elect.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Schedulers;

/// <summary>
/// diffusers' <c>EulerAncestralDiscreteScheduler</c> (epsilon or v prediction; linear or
/// scaled_linear betas; linspace / leading / trailing spacing), with the noise of each step passed
/// in by the caller so that every candidate seed draws from its own CPU generator.
/// Sigmas are kept in float32 as diffusers keeps them; the step arithmetic mirrors diffusers'.
/// </summary>
public sealed class EulerAncestralDiscreteScheduler : IDenoisingScheduler
{
    private readonly float[] _alphasCumprod;
    private float[] _timesteps = [];
    private float[] _sigmas = [];

    public int NumTrainTimesteps { get; }
    public string TimestepSpacing { get; }
    public int StepsOffset { get; }
    public string PredictionType { get; }

    public EulerAncestralDiscreteScheduler(int numTrainTimesteps = 1000, double betaStart = 0.0001, double betaEnd = 0.02,
        string betaSchedule = "linear", string predictionType = "epsilon", string timestepSpacing = "linspace", int stepsOffset = 0)
    {
        if (numTrainTimesteps < 2) throw new ArgumentOutOfRangeException(nameof(numTrainTimesteps), "num_train_timesteps must be at least 2");
        if (predictionType is not ("epsilon" or "v_prediction"))
            throw new NotSupportedException($"prediction_type '{predictionType}' is not supported (epsilon or v_prediction)");
        if (timestepSpacing is not ("linspace" or "leading" or "trailing"))
            throw new NotSupportedException($"timestep_spacing '{timestepSpacing}' is not supported (linspace, leading or trailing)");
        NumTrainTimesteps = numTrainTimesteps;
        TimestepSpacing = timestepSpacing;
        StepsOffset = stepsOffset;
        PredictionType = predictionType;
        using var scope = torch.NewDisposeScope();
        Tensor betas = betaSchedule switch
        {
            "linear" => torch.linspace(betaStart, betaEnd, numTrainTimesteps, dtype: ScalarType.Float32),
            "scaled_linear" => torch.linspace(Math.Sqrt(betaStart), Math.Sqrt(betaEnd), numTrainTimesteps, dtype: ScalarType.Float32).pow(2),
            _ => throw new NotSupportedException($"beta_schedule '{betaSchedule}' is not supported (linear or scaled_linear)"),
        };
        var alphas = 1.0f - betas;
        _alphasCumprod = torch.cumprod(alphas, 0).data<float>().ToArray();
    }

    /// <summary>Builds the scheduler from a diffusers <c>scheduler_config.json</c>.</summary>
    public static EulerAncestralDiscreteScheduler FromConfig(ModelConfig c)
    {
        if (c.Bool("rescale_betas_zero_snr", false))
            throw new NotSupportedException($"{c.Source}: rescale_betas_zero_snr = true is not supported");
        if (c.Has("trained_betas"))
            throw new NotSupportedException($"{c.Source}: trained_betas is not supported");
        var scheduler = new EulerAncestralDiscreteScheduler(
            c.Int("num_train_timesteps", 1000), c.Double("beta_start", 0.0001), c.Double("beta_end", 0.02),
            c.String("beta_schedule", "linear"), c.String("prediction_type", "epsilon"),
            c.String("timestep_spacing", "linspace"), c.Int("steps_offset", 0));
        // keys of the PNDM / DDIM configs a scheduler is often converted from, which diffusers'
        // EulerAncestralDiscreteScheduler ignores as well
        c.RejectUnsupported(["clip_sample", "clip_sample_range", "set_alpha_to_one", "skip_prk_steps", "thresholding",
                             "dynamic_thresholding_ratio", "sample_max_value"]);
        return scheduler;
    }

    public int NumInferenceSteps { get; private set; }

    /// <summary>The float32 timesteps (descending).</summary>
    public IReadOnlyList<float> Timesteps => _timesteps;

    /// <summary>The float32 sigmas (length steps + 1, last 0).</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    public float InitNoiseSigma => TimestepSpacing is "linspace" or "trailing"
        ? _sigmas.Max()
        : MathF.Sqrt(_sigmas.Max() * _sigmas.Max() + 1f);

    public bool UsesStepNoise => true;

    public void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1 || numInferenceSteps > NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"inference steps must be between 1 and {NumTrainTimesteps}, got {numInferenceSteps}");
        int n = numInferenceSteps, T = NumTrainTimesteps;
        var ts = new float[n];
        switch (TimestepSpacing)
        {
            case "linspace":
                // np.linspace(0, T-1, n, dtype=float32)[::-1]: computed in float64, then rounded to float32.
                for (int k = 0; k < n; k++)
                {
                    double v = n == 1 ? 0 : k * ((T - 1.0) / (n - 1));
                    if (k == n - 1 && n > 1) v = T - 1;
                    ts[n - 1 - k] = (float)v;
                }
                break;
            case "leading":
                int ratio = T / n;
                for (int k = 0; k < n; k++) ts[n - 1 - k] = (float)Math.Round((double)k * ratio, MidpointRounding.ToEven) + StepsOffset;
                break;
            default: // trailing
                double r = (double)T / n;
                var list = new List<float>();
                for (double v = T; v > 0; v -= r) list.Add((float)Math.Round(v, MidpointRounding.ToEven) - 1f);
                ts = list.ToArray();
                n = ts.Length;
                break;
        }
        // sigmas over train timesteps in float32, interpolated in float64 (np.interp), stored float32.
        var full = _alphasCumprod.Select(a => MathF.Sqrt((1f - a) / a)).ToArray();
        var sig = new float[n + 1];
        for (int k = 0; k < n; k++)
        {
            double t = ts[k];
            int lo = Math.Clamp((int)Math.Floor(t), 0, full.Length - 1);
            int hi = Math.Min(lo + 1, full.Length - 1);
            double frac = t - lo;
            sig[k] = (float)(hi == lo ? full[lo] : full[lo] + (full[hi] - (double)full[lo]) * frac);
        }
        sig[n] = 0f;
        _timesteps = ts;
        _sigmas = sig;
        NumInferenceSteps = n;
    }

    public float Timestep(int stepIndex) => _timesteps[stepIndex];

    public float Sigma(int stepIndex) => _sigmas[stepIndex];

    public Tensor ScaleModelInput(Tensor sample, int stepIndex)
    {
        float sigma = _sigmas[stepIndex];
        return sample / MathF.Sqrt(sigma * sigma + 1f);
    }

    /// <summary>The x0 estimate diffusers computes inside <c>step</c> (float32).</summary>
    public Tensor PredictOriginal(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        float sigma = _sigmas[stepIndex];
        using var s = sample.to(ScalarType.Float32);
        if (PredictionType == "epsilon") return s - sigma * modelOutput;
        float c = MathF.Sqrt(sigma * sigma + 1f);
        return modelOutput * (-sigma / c) + s / (sigma * sigma + 1f);
    }

    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null)
    {
        ArgumentNullException.ThrowIfNull(noise);
        if (stepIndex < 0 || stepIndex >= NumInferenceSteps)
            throw new ArgumentOutOfRangeException(nameof(stepIndex));
        using var scope = torch.NewDisposeScope();
        float sigma = _sigmas[stepIndex];
        float sigmaFrom = sigma, sigmaTo = _sigmas[stepIndex + 1];
        float sigmaUp = MathF.Sqrt(sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom));
        float sigmaDown = MathF.Sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
        var s = sample.to(ScalarType.Float32);
        var pred = PredictOriginal(modelOutput, stepIndex, s);
        var derivative = (s - pred) / sigma;
        float dt = sigmaDown - sigma;
        var prev = s + derivative * dt;
        prev = prev + noise.to(prev.dtype, prev.device) * sigmaUp;
        return prev.to(sample.dtype).MoveToOuterDisposeScope();
    }
}
