using static TorchSharp.torch;

namespace Elect.Schedulers;

/// <summary>
/// A sampler over a fixed schedule, in the k-diffusion / flow "sigma" form both editing families
/// use: the Tweedie (x0) estimate at step i is <c>x_i - Sigma(i) * modelOutput</c>.
/// </summary>
public interface IDenoisingScheduler
{
    /// <summary>Number of inference steps the schedule was set for.</summary>
    int NumInferenceSteps { get; }

    /// <summary>The timestep fed to the model at step i (float32, as the reference feeds it).</summary>
    float Timestep(int stepIndex);

    /// <summary>Sigma of step i (i in [0, NumInferenceSteps]; the last is 0).</summary>
    float Sigma(int stepIndex);

    /// <summary>Multiplier of the unit Gaussian initial latents.</summary>
    float InitNoiseSigma { get; }

    /// <summary>Whether <see cref="Step"/> consumes a fresh Gaussian draw per step (ancestral samplers).</summary>
    bool UsesStepNoise { get; }

    /// <summary>Scales the model input at step i (identity for flow matching).</summary>
    Tensor ScaleModelInput(Tensor sample, int stepIndex);

    /// <summary>
    /// The x0 (Tweedie) estimate from the model output at step i: <c>x_i - Sigma(i) * eps</c> for
    /// epsilon prediction, <c>x_i - Sigma(i) * v</c> for flow velocity (float32).
    /// </summary>
    Tensor PredictOriginal(Tensor modelOutput, int stepIndex, Tensor sample);

    /// <summary>One update from step i to i+1. <paramref name="noise"/> is required iff <see cref="UsesStepNoise"/>.</summary>
    Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Tensor? noise = null);
}
