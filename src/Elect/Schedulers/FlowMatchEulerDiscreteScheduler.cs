using Elect.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Schedulers;

/// <summary>
/// diffusers' <c>FlowMatchEulerDiscreteScheduler</c> (rectified flow, SD3 / UltraEdit) with a static
/// shift: the default schedule of <c>set_timesteps(n)</c> and the deterministic Euler step.
/// Tables reproduce diffusers 0.40 bit for bit: the training sigmas in float32, the inference
/// schedule in float64 (numpy), then stored as float32 (the values are exposed as float64).
/// </summary>
public sealed class FlowMatchEulerDiscreteScheduler : IDenoisingScheduler
{
    private float[] _sigmas = [];

    public FlowMatchEulerDiscreteScheduler(int numTrainTimesteps = 1000, double shift = 1.0)
    {
        if (numTrainTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTrainTimesteps), "num_train_timesteps must be positive");
        if (!(shift > 0)) throw new ArgumentOutOfRangeException(nameof(shift), "shift must be positive");
        NumTrainTimesteps = numTrainTimesteps;
        Shift = shift;
        // __init__: timesteps N..1 (float32), sigmas = t / N, shifted, all in float32.
        float n = numTrainTimesteps, s = (float)shift;
        SigmaMax = ShiftF32(numTrainTimesteps / n, s);
        SigmaMin = ShiftF32(1f / n, s);
    }

    public int NumTrainTimesteps { get; }
    public double Shift { get; }
    /// <summary>Largest / smallest training sigma (float32 values).</summary>
    public double SigmaMax { get; }
    public double SigmaMin { get; }

    /// <summary>The inference timesteps (float32 values), length n; empty before <see cref="SetTimesteps"/>.</summary>
    public double[] Timesteps { get; private set; } = [];
    /// <summary>The inference sigmas (float32 values), length n + 1, the last 0.</summary>
    public double[] Sigmas { get; private set; } = [];
    public int NumInferenceSteps { get; private set; }

    private static float ShiftF32(float sigma, float shift) => shift * sigma / (1f + (shift - 1f) * sigma);

    /// <summary>Reads <c>scheduler_config.json</c> (a file, or the folder holding it).</summary>
    public static FlowMatchEulerDiscreteScheduler FromConfig(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "scheduler_config.json");
        return FromConfig(ModelConfig.Load(path));
    }

    /// <summary>Builds the scheduler from a parsed <c>scheduler_config.json</c>.</summary>
    public static FlowMatchEulerDiscreteScheduler FromConfig(ModelConfig c)
    {
        if (c.Bool("use_dynamic_shifting", false))
            throw new NotSupportedException($"{c.Source}: use_dynamic_shifting=true (resolution-dependent shift, needs mu) is not supported; only a static 'shift'");
        foreach (var key in new[] { "invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "stochastic_sampling" })
            if (c.Bool(key, false))
                throw new NotSupportedException($"{c.Source}: {key}=true is not supported");
        if (c.Has("shift_terminal") && c.Double("shift_terminal") != 0)
            throw new NotSupportedException($"{c.Source}: shift_terminal is not supported");
        var scheduler = new FlowMatchEulerDiscreteScheduler(c.Int("num_train_timesteps", 1000), c.Double("shift", 1.0));
        // the resolution-dependent shift's parameters: unused while use_dynamic_shifting is false
        c.RejectUnsupported(["base_image_seq_len", "base_shift", "max_image_seq_len", "max_shift", "time_shift_type"]);
        return scheduler;
    }

    /// <summary>
    /// diffusers <c>set_timesteps(n)</c>: t = linspace(sigma_max·N, sigma_min·N, n) (float64), σ = t/N,
    /// σ' = shift·σ / (1 + (shift−1)·σ), stored as float32; timesteps = σ'·N in float32; a terminal σ = 0.
    /// </summary>
    public void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1) throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), "need at least one inference step");
        int n = numInferenceSteps;
        double start = SigmaMax * NumTrainTimesteps, stop = SigmaMin * NumTrainTimesteps;
        var sig = new float[n + 1];
        var ts = new double[n];
        double step = n > 1 ? (stop - start) / (n - 1) : 0;
        for (int i = 0; i < n; i++)
        {
            // numpy.linspace: i*step + start, the last value set to stop exactly
            double t = (n > 1 && i == n - 1) ? stop : i * step + start;
            double s = t / NumTrainTimesteps;
            s = Shift * s / (1 + (Shift - 1) * s);
            sig[i] = (float)s;
            ts[i] = sig[i] * (float)NumTrainTimesteps;
        }
        sig[n] = 0f;
        _sigmas = sig;
        NumInferenceSteps = n;
        Timesteps = ts;
        Sigmas = sig.Select(x => (double)x).ToArray();
    }

    /// <summary>σ at <paramref name="stepIndex"/> (0..n; n is the terminal 0).</summary>
    public double Sigma(int stepIndex)
    {
        CheckIndex(stepIndex, _sigmas.Length, "sigma index");
        return _sigmas[stepIndex];
    }

    /// <summary>
    /// One Euler step from step <paramref name="stepIndex"/> to the next, as diffusers computes it:
    /// sample upcast to float32, prev = sample + (σ_next − σ)·model_output (dt a float32 scalar),
    /// cast back to the model output's dtype.
    /// </summary>
    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        CheckIndex(stepIndex, _sigmas.Length - 1, "step index");
        float dt = _sigmas[stepIndex + 1] - _sigmas[stepIndex];
        using var scope = torch.NewDisposeScope();
        var s32 = sample.to(ScalarType.Float32);
        var prev = s32 + modelOutput * dt;
        return prev.to(modelOutput.dtype).MoveToOuterDisposeScope();
    }

    float IDenoisingScheduler.Timestep(int stepIndex) => (float)Timesteps[stepIndex];

    float IDenoisingScheduler.Sigma(int stepIndex) => (float)Sigma(stepIndex);

    /// <summary>Flow matching starts from unit Gaussian latents.</summary>
    public float InitNoiseSigma => 1f;

    /// <summary>The Euler flow step is deterministic.</summary>
    public bool UsesStepNoise => false;

    /// <summary>Flow matching feeds the latents unscaled.</summary>
    public Tensor ScaleModelInput(Tensor sample, int stepIndex) => sample;

    /// <summary>x0 = x_t − σ·v (the ELECT authors' Tweedie estimate for rectified flow), float32.</summary>
    public Tensor PredictOriginal(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        using var s32 = sample.to(ScalarType.Float32);
        using var v32 = modelOutput.to(ScalarType.Float32);
        using var scaled = v32 * (float)Sigma(stepIndex);
        return s32 - scaled;
    }

    Tensor IDenoisingScheduler.Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise) => Step(modelOutput, stepIndex, sample);

    private void CheckIndex(int index, int count, string what)
    {
        if (_sigmas.Length == 0) throw new InvalidOperationException("call SetTimesteps before using the schedule");
        if (index < 0 || index >= count)
            throw new ArgumentOutOfRangeException(nameof(index), $"{what} {index} is outside 0..{count - 1} ({NumInferenceSteps} inference steps)");
    }
}
