namespace Elect.Selection;

/// <summary>
/// Sampling and selection parameters of one edit (defaults as the ELECT reference's CLI). Validation errors
/// name the option as <c>EditOptions.X</c> / <c>SelectionOptions.X</c> (ParamName: <c>X</c>); a front end maps them to its own names.
/// </summary>
public sealed record EditOptions
{
    /// <summary>Denoising steps T.</summary>
    public int InferenceSteps { get; init; } = 100;

    /// <summary>Text guidance; null: the model family's default (7.5 IP2P, 7.0 UltraEdit).</summary>
    public float? TextGuidance { get; init; }

    /// <summary>Image guidance.</summary>
    public float ImageGuidance { get; init; } = 1.5f;

    /// <summary>Candidates per model call (null: all active candidates; halved automatically on out-of-memory).</summary>
    public int? MaxBatch { get; init; }

    /// <summary>Images per VAE decode call (null: 4 on CUDA, all on CPU; halved on out-of-memory).</summary>
    public int? MaxDecodeBatch { get; init; }

    /// <summary>
    /// Fail with <see cref="NonFiniteException"/> on NaN/Inf in the BIS or the final images (default). The bench turns it
    /// off: random weights give meaningless numbers, and only the timing matters there.
    /// </summary>
    public bool CheckFinite { get; init; } = true;

    /// <summary>Largest accepted guidance scale: beyond it the guided prediction overflows into Inf/NaN.</summary>
    public const float MaxGuidance = 1000f;

    public void Validate()
    {
        if (InferenceSteps < 1 || InferenceSteps > 1000)
            throw new ArgumentOutOfRangeException(nameof(InferenceSteps), $"EditOptions.InferenceSteps must be between 1 and 1000, got {InferenceSteps}");
        if (TextGuidance is { } t && !(float.IsFinite(t) && t >= 0 && t <= MaxGuidance))
            throw new ArgumentOutOfRangeException(nameof(TextGuidance), $"EditOptions.TextGuidance must be a finite number between 0 and {MaxGuidance}, got {t}");
        if (!(float.IsFinite(ImageGuidance) && ImageGuidance >= 0 && ImageGuidance <= MaxGuidance))
            throw new ArgumentOutOfRangeException(nameof(ImageGuidance), $"EditOptions.ImageGuidance must be a finite number between 0 and {MaxGuidance}, got {ImageGuidance}");
        if (MaxBatch is < 1) throw new ArgumentOutOfRangeException(nameof(MaxBatch), "EditOptions.MaxBatch must be at least 1");
        if (MaxDecodeBatch is < 1) throw new ArgumentOutOfRangeException(nameof(MaxDecodeBatch), "EditOptions.MaxDecodeBatch must be at least 1");
    }
}

/// <summary>ELECT's selection parameters.</summary>
public sealed record SelectionOptions
{
    /// <summary>Step at which the candidates are scored and all but the winner stop (1..T).</summary>
    public int StoppingStep { get; init; } = 40;

    /// <summary>First step (inclusive) whose noise differences enter the relevance map.</summary>
    public int FirstMaskStep { get; init; }

    /// <summary>Last step (exclusive) whose noise differences enter the relevance map.</summary>
    public int LastMaskStep { get; init; } = 20;

    /// <summary>Finish every candidate, not only the winner (the reference's --visualize_all_seeds).</summary>
    public bool KeepAllSeeds { get; init; }

    public void Validate(int inferenceSteps)
    {
        if (StoppingStep < 1 || StoppingStep > inferenceSteps)
            throw new ArgumentOutOfRangeException(nameof(StoppingStep), $"SelectionOptions.StoppingStep must be between 1 and EditOptions.InferenceSteps ({inferenceSteps}), got {StoppingStep}");
        if (FirstMaskStep < 0)
            throw new ArgumentOutOfRangeException(nameof(FirstMaskStep), $"SelectionOptions.FirstMaskStep must be >= 0, got {FirstMaskStep}");
        if (LastMaskStep <= FirstMaskStep)
            throw new ArgumentOutOfRangeException(nameof(LastMaskStep), $"SelectionOptions.LastMaskStep ({LastMaskStep}) must be greater than SelectionOptions.FirstMaskStep ({FirstMaskStep})");
        if (FirstMaskStep >= StoppingStep)
            throw new ArgumentOutOfRangeException(nameof(FirstMaskStep), $"SelectionOptions.FirstMaskStep ({FirstMaskStep}) must be below SelectionOptions.StoppingStep ({StoppingStep}): the relevance map would be empty at selection");
    }
}
