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

    /// <summary>
    /// Successive halving (beyond the paper; null: off): at each of these steps (ascending, each in
    /// (FirstMaskStep, stopping step)) every active candidate is scored by BIS on its Tweedie estimate and the
    /// relevance map accumulated so far, and only the best <see cref="Keep"/> (default: the better half, rounded
    /// up) go on. A step inside the mask window makes the later mask steps average over the survivors only.
    /// </summary>
    public IReadOnlyList<int>? PruneAt { get; init; }

    /// <summary>Candidates kept at each <see cref="PruneAt"/> step (null: ceil(n/2) of the n active).</summary>
    public int? Keep { get; init; }

    /// <summary>
    /// Adaptive stopping (beyond the paper): <see cref="StoppingStep"/> is ignored; the candidates are scored from
    /// <see cref="LastMaskStep"/> every <see cref="AutoStopInterval"/> steps, and the run stops at the first check where
    /// <see cref="AdaptiveStopping.ShouldStop"/> holds, at the latest at <see cref="AutoStopMaxStep"/>.
    /// </summary>
    public bool AutoStop { get; init; }

    /// <summary>Steps between two checks of adaptive stopping.</summary>
    public int AutoStopInterval { get; init; } = 2;

    /// <summary>Consecutive checks the leader must have been first (the current one included).</summary>
    public int AutoStopPatience { get; init; } = 3;

    /// <summary>Smallest relative margin of the leader over the runner-up, (BIS₂ − BIS₁)/BIS₁, to stop.</summary>
    public double AutoStopMargin { get; init; } = 0.02;

    /// <summary>
    /// Latest stopping step of adaptive stopping (null: the paper's per-family step, <see cref="DefaultMaxStop"/>).
    /// </summary>
    public int? AutoStopMaxStep { get; init; }

    /// <summary>
    /// A known edit region (e.g. PIE-Bench's ground-truth mask) that replaces the estimated relevance map in the BIS
    /// (the paper's ground-truth-mask ablation); null: the estimated map. Not the UltraEdit mask channel
    /// (<c>Editor.Edit(mask)</c>).
    /// </summary>
    public KnownMask? KnownMask { get; init; }

    /// <summary>
    /// The paper's stopping step per model type, as the latest step of adaptive stopping: about 70% of the steps
    /// remaining for diffusion models (step 0.3·T), 60% for rectified flow (step 0.4·T); at least LastMaskStep.
    /// </summary>
    public int DefaultMaxStop(int inferenceSteps, bool rectifiedFlow) =>
        Math.Min(inferenceSteps, Math.Max(LastMaskStep, (int)Math.Round(inferenceSteps * (rectifiedFlow ? 0.4 : 0.3))));

    /// <summary>The steps at which adaptive stopping scores: LastMaskStep, then every AutoStopInterval, and the maximum.</summary>
    public IReadOnlyList<int> AutoStopChecks(int maxStop)
    {
        var checks = new List<int>();
        for (int s = Math.Max(1, LastMaskStep); s < maxStop; s += AutoStopInterval) checks.Add(s);
        checks.Add(maxStop);
        return checks;
    }

    /// <summary>Whether any option beyond the paper's algorithm is set.</summary>
    public bool BeyondPaper => PruneAt is { Count: > 0 } || AutoStop || KnownMask is not null;

    public void Validate(int inferenceSteps)
    {
        if (!AutoStop && (StoppingStep < 1 || StoppingStep > inferenceSteps))
            throw new ArgumentOutOfRangeException(nameof(StoppingStep), $"SelectionOptions.StoppingStep must be between 1 and EditOptions.InferenceSteps ({inferenceSteps}), got {StoppingStep}");
        if (FirstMaskStep < 0)
            throw new ArgumentOutOfRangeException(nameof(FirstMaskStep), $"SelectionOptions.FirstMaskStep must be >= 0, got {FirstMaskStep}");
        if (LastMaskStep <= FirstMaskStep)
            throw new ArgumentOutOfRangeException(nameof(LastMaskStep), $"SelectionOptions.LastMaskStep ({LastMaskStep}) must be greater than SelectionOptions.FirstMaskStep ({FirstMaskStep})");
        if (FirstMaskStep >= StoppingStep)
            throw new ArgumentOutOfRangeException(nameof(FirstMaskStep), $"SelectionOptions.FirstMaskStep ({FirstMaskStep}) must be below SelectionOptions.StoppingStep ({StoppingStep}): the relevance map would be empty at selection");
        if (AutoStop)
        {
            if (AutoStopInterval < 1)
                throw new ArgumentOutOfRangeException(nameof(AutoStopInterval), $"SelectionOptions.AutoStopInterval must be at least 1, got {AutoStopInterval}");
            if (AutoStopPatience < 1)
                throw new ArgumentOutOfRangeException(nameof(AutoStopPatience), $"SelectionOptions.AutoStopPatience must be at least 1, got {AutoStopPatience}");
            if (!(double.IsFinite(AutoStopMargin) && AutoStopMargin >= 0))
                throw new ArgumentOutOfRangeException(nameof(AutoStopMargin), $"SelectionOptions.AutoStopMargin must be a finite number >= 0, got {AutoStopMargin}");
            if (AutoStopMaxStep is { } m && (m <= FirstMaskStep || m < LastMaskStep || m > inferenceSteps))
                throw new ArgumentOutOfRangeException(nameof(AutoStopMaxStep), $"SelectionOptions.AutoStopMaxStep must be between SelectionOptions.LastMaskStep ({LastMaskStep}) and EditOptions.InferenceSteps ({inferenceSteps}) and above SelectionOptions.FirstMaskStep, got {m}");
            if (LastMaskStep > inferenceSteps)
                throw new ArgumentOutOfRangeException(nameof(LastMaskStep), $"SelectionOptions.LastMaskStep ({LastMaskStep}) must be at most EditOptions.InferenceSteps ({inferenceSteps}) with SelectionOptions.AutoStop");
        }
        if (PruneAt is { Count: > 0 } prune)
        {
            int latest = AutoStop ? AutoStopMaxStep ?? inferenceSteps : StoppingStep;
            for (int k = 0; k < prune.Count; k++)
            {
                if (prune[k] <= FirstMaskStep || prune[k] >= latest)
                    throw new ArgumentOutOfRangeException(nameof(PruneAt), $"SelectionOptions.PruneAt steps must lie above SelectionOptions.FirstMaskStep ({FirstMaskStep}) and below the stopping step ({latest}), got {prune[k]}");
                if (k > 0 && prune[k] <= prune[k - 1])
                    throw new ArgumentOutOfRangeException(nameof(PruneAt), $"SelectionOptions.PruneAt steps must be strictly ascending, got {string.Join(",", prune)}");
            }
        }
        if (Keep is < 1) throw new ArgumentOutOfRangeException(nameof(Keep), $"SelectionOptions.Keep must be at least 1, got {Keep}");
        if (Keep is not null && PruneAt is not { Count: > 0 })
            throw new ArgumentException("SelectionOptions.Keep needs SelectionOptions.PruneAt (the steps at which to keep them)", nameof(Keep));
    }

    /// <summary>How many of <paramref name="active"/> candidates a pruning step keeps.</summary>
    public int KeptAtPrune(int active) => Math.Clamp(Keep ?? (active + 1) / 2, 1, active);
}
