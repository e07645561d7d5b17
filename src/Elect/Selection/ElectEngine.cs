using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Elect.Pipelines;
using Elect.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Selection;

/// <summary>Progress of a denoising run: step i of T with a active candidates.</summary>
public readonly record struct EditProgress(int Step, int TotalSteps, int ActiveCandidates, string Phase);

/// <summary>Wall time per phase (seconds; the device is synchronised at phase ends only).</summary>
public sealed record PhaseTimes(double Prepare, double Candidates, double Selection, double Finish, double Decode)
{
    public double Total => Prepare + Candidates + Selection + Finish + Decode;
}

/// <summary>NaN or Inf in an edit's numbers (model output, Tweedie estimate, BIS or final image).</summary>
public sealed class NonFiniteException(string message) : InvalidOperationException(message);

/// <summary>The outcome of one edit: plain (no selection) or ELECT.</summary>
public sealed class EditResult : IDisposable
{
    /// <summary>Candidate seeds in candidate order.</summary>
    public required IReadOnlyList<long> Seeds { get; init; }

    /// <summary>
    /// BIS per candidate (candidate order); null for a plain run. With pruning, a pruned candidate's BIS is its score at
    /// the step it was pruned (<see cref="ScoredAtStep"/>).
    /// </summary>
    public IReadOnlyList<double>? Bis { get; init; }

    /// <summary>The step of each candidate's <see cref="Bis"/> (the stopping step unless it was pruned earlier); null for a plain run.</summary>
    public IReadOnlyList<int>? ScoredAtStep { get; init; }

    /// <summary>The pruning step that dropped each candidate (null: it reached the stopping step); null without pruning.</summary>
    public IReadOnlyList<int?>? PrunedAtStep { get; init; }

    /// <summary>The checks of adaptive stopping in order; null without it.</summary>
    public IReadOnlyList<ScoreCheck>? StopChecks { get; init; }

    /// <summary>The winner's margin and the warning flags; null for a plain run.</summary>
    public SelectionConfidence? Confidence { get; init; }

    /// <summary><c>elect</c>, with <c>+prune</c>, <c>+auto-stop</c>, <c>+known-mask</c> for the options beyond the paper; null for a plain run.</summary>
    public string? Strategy { get; init; }

    /// <summary>What plain ELECT with the same stopping step costs: N·t_stop + (T − t_stop) (N·T with all seeds kept); null for a plain run.</summary>
    public long? PlainElectEvaluations { get; init; }

    /// <summary>The winner; null for a plain run.</summary>
    public long? BestSeed { get; init; }

    /// <summary>Finished images per seed: float32 [H,W,3] in [0,1] on the CPU, before 8-bit rounding.</summary>
    public required IReadOnlyDictionary<long, Tensor> Images { get; init; }

    /// <summary>The relevance map at latent resolution [h,w] (CPU float32); null for a plain run.</summary>
    public Tensor? RelevanceMap { get; init; }

    public required int Steps { get; init; }
    public int? StoppingStep { get; init; }

    /// <summary>
    /// Every candidate was finished (plain runs, or ELECT with <see cref="SelectionOptions.KeepAllSeeds"/>; with
    /// <see cref="SelectionOptions.PruneAt"/> every candidate that survived the pruning).
    /// </summary>
    public bool AllSeedsKept { get; init; }

    /// <summary>Model evaluations spent (one evaluation = one candidate at one step, all three guidance branches).</summary>
    public required long ModelEvaluations { get; init; }

    /// <summary>What finishing every candidate (Best-of-N) would cost: N·T.</summary>
    public long BestOfNEvaluations => (long)Seeds.Count * Steps;

    public required PhaseTimes Times { get; init; }

    /// <summary>What the family's multimodal LLM wrote for the edit (MGIE), from the condition; null for the other families.</summary>
    public GeneratedInstruction? Generated { get; init; }

    public void Dispose()
    {
        foreach (var t in Images.Values) t.Dispose();
        RelevanceMap?.Dispose();
    }
}

/// <summary>
/// Runs the editing loop for many seeds at once: all active candidates share each model call
/// (micro-batched when memory requires), the relevance map and BIS stay on the device, and the
/// only host synchronisation inside the loop is reading the N scores at the stopping step (and at each opt-in
/// scoring step: <see cref="SelectionOptions.PruneAt"/>, adaptive-stopping checks). Each
/// candidate's noise comes from its own CPU generator (initial latents, then one draw per step),
/// so a seed's trajectory does not depend on which other seeds share its batch.
/// </summary>
public sealed class ElectEngine
{
    private readonly EditingModel _model;
    private readonly ILogger _log;
    private readonly MicroBatcher _modelCalls;
    private readonly MicroBatcher _decodes;

    public ElectEngine(EditingModel model, ILogger? logger = null)
    {
        _model = model;
        _log = logger ?? NullLogger.Instance;
        _modelCalls = new MicroBatcher((chunk, batch) =>
            _log.LogWarning("out of memory with {Chunk} candidates per model call; retrying with {Batch}", chunk, batch));
        _decodes = new MicroBatcher((chunk, batch) =>
            _log.LogWarning("out of memory decoding {Chunk} images at once; retrying with {Batch}", chunk, batch));
    }

    /// <summary>
    /// Plain editing (no selection) of every seed to completion, batched. Equivalent, seed by seed, to
    /// the reference pipeline's <c>__call__</c>.
    /// </summary>
    public EditResult RunPlain(EditCondition condition, IReadOnlyList<long> seeds, EditOptions options,
                               IProgress<EditProgress>? progress = null, CancellationToken cancel = default)
        => Run(condition, seeds, options, null, progress, cancel, TimeSpan.Zero);

    /// <summary>ELECT: denoise all candidates to the stopping step, score, finish the winner (or all).</summary>
    public EditResult RunElect(EditCondition condition, IReadOnlyList<long> seeds, EditOptions options, SelectionOptions selection,
                               IProgress<EditProgress>? progress = null, CancellationToken cancel = default)
        => Run(condition, seeds, options, selection, progress, cancel, TimeSpan.Zero);

    /// <summary>
    /// The full run, with the time the caller spent preparing <paramref name="condition"/> recorded as the prepare phase:
    /// (a) denoise every candidate to the stopping step, accumulating the relevance map; (b) select by BIS on the
    /// decoded Tweedie estimates and prune; (c) finish the winner (or all) and decode. A plain run is phase (a) to the end.
    /// </summary>
    public EditResult Run(EditCondition condition, IReadOnlyList<long> seeds, EditOptions options, SelectionOptions? selection,
                          IProgress<EditProgress>? progress, CancellationToken cancel, TimeSpan prepareTime)
    {
        options.Validate();
        if (seeds.Count == 0) throw new ArgumentException("no candidate seeds given", nameof(seeds));
        if (seeds.Distinct().Count() != seeds.Count) throw new ArgumentException($"candidate seeds must be distinct: {string.Join(" ", seeds)}", nameof(seeds));
        selection?.Validate(options.InferenceSteps);

        var dev = _model.Device;
        _modelCalls.Size = options.MaxBatch;
        _decodes.Size = options.MaxDecodeBatch ?? (dev.type == DeviceType.CUDA ? 4 : int.MaxValue);

        // everything the run allocates is owned by this scope; only the result's tensors are detached from it
        using var runScope = NewDisposeScope();
        using var run = new CandidateSet(_model, condition, seeds, options, selection, progress, cancel);
        double tCandidates = 0, tSelection = 0;
        long? best = null;

        if (selection is null)
        {
            // (a) every candidate to the end
            using var none = Denoise(run, 0, run.Stop, score: false);
            Synchronize(dev);
            tCandidates = run.Clock.Elapsed.TotalSeconds;
        }
        else
        {
            // (a) every candidate to each scoring point (pruning steps, adaptive checks, the stopping step), accumulating the
            // relevance map; (b) score by BIS there: prune, or select the winner at the stopping step
            var prunes = selection.PruneAt ?? [];
            var checks = selection.AutoStop ? selection.AutoStopChecks(run.Stop) : [run.Stop];
            var points = prunes.Concat(checks).Where(s => s <= run.Stop).Distinct().Order().ToArray();
            if (run.Scheduler.UsesStepNoise) EnsureNoise(run, 0, run.Stop);   // pre-drawn to the (latest) stopping step, as without pruning
            int at = 0;
            foreach (var point in points)
            {
                using var z0 = Denoise(run, at, point, score: true)!;
                at = point;
                Synchronize(dev);
                double t0 = run.Clock.Elapsed.TotalSeconds;
                tCandidates = t0 - tSelection;
                var (scores, coverage) = Score(run, z0, point);
                bool final = point == run.Stop;
                if (selection.AutoStop && checks.Contains(point))
                {
                    run.StopChecks.Add(ScoreCheck.Of(point, run.Active, scores));
                    final |= AdaptiveStopping.ShouldStop(run.StopChecks, selection.AutoStopPatience, selection.AutoStopMargin);
                }
                if (final)
                {
                    run.Stop = point;
                    best = SelectWinner(run, scores, coverage);
                }
                else if (prunes.Contains(point))
                    Prune(run, scores, selection.KeptAtPrune(run.Active.Count), point);
                tSelection += run.Clock.Elapsed.TotalSeconds - t0;
                if (final) break;
            }
        }
        // (c) finish the kept candidates and decode
        Finish(run);
        Synchronize(dev);
        double tFinish = run.Clock.Elapsed.TotalSeconds - tCandidates - tSelection;
        var images = Decode(run);
        double tDecode = run.Clock.Elapsed.TotalSeconds - tCandidates - tSelection - tFinish;
        return new EditResult
        {
            Seeds = seeds.ToArray(),
            Bis = selection is null ? null : run.Bis,
            ScoredAtStep = selection is null ? null : run.ScoredAt,
            PrunedAtStep = selection?.PruneAt is { Count: > 0 } ? run.PrunedAt : null,
            StopChecks = selection is { AutoStop: true } ? run.StopChecks.ToArray() : null,
            Confidence = run.Confidence,
            Strategy = selection is null ? null : string.Concat("elect", selection.PruneAt is { Count: > 0 } ? "+prune" : "",
                selection.AutoStop ? "+auto-stop" : "", selection.KnownMask is not null ? "+known-mask" : ""),
            PlainElectEvaluations = selection is null ? null
                : selection.KeepAllSeeds ? (long)seeds.Count * run.Steps : (long)seeds.Count * run.Stop + (run.Steps - run.Stop),
            BestSeed = best,
            Images = images,
            RelevanceMap = run.Relevance?.to(ScalarType.Float32).cpu().DetachFromDisposeScope(),
            Steps = run.Steps,
            StoppingStep = selection is null ? null : run.Stop,
            AllSeedsKept = selection is null || selection.KeepAllSeeds,
            ModelEvaluations = run.Evaluations,
            Times = new PhaseTimes(prepareTime.TotalSeconds, tCandidates, tSelection, tFinish, tDecode),
            Generated = condition.Generated,
        };
    }

    /// <summary>
    /// The state of one run: the scheduler, the candidates still active with their latents and CPU generators,
    /// the pre-drawn step noise, the relevance map and the evaluation count.
    /// </summary>
    private sealed class CandidateSet : IDisposable
    {
        public CandidateSet(EditingModel model, EditCondition condition, IReadOnlyList<long> seeds, EditOptions options,
                            SelectionOptions? selection, IProgress<EditProgress>? progress, CancellationToken cancel)
        {
            Clock = Stopwatch.StartNew();
            Condition = condition;
            Seeds = seeds;
            Options = options;
            Selection = selection;
            Progress = progress;
            Cancel = cancel;
            Scheduler = model.CreateScheduler(options.InferenceSteps);
            Steps = Scheduler.NumInferenceSteps;
            Stop = selection is null ? Steps
                : selection.AutoStop ? selection.AutoStopMaxStep ?? selection.DefaultMaxStop(Steps, Scheduler is FlowMatchEulerDiscreteScheduler)
                : selection.StoppingStep;
            TextGuidance = options.TextGuidance ?? model.DefaultTextGuidance;
            var dev = model.Device;
            Generators = seeds.Select(s => new Generator(unchecked((ulong)s))).ToArray();
            Active = Enumerable.Range(0, seeds.Count).ToList();
            LatentShape = [1, model.LatentChannels, condition.LatentHeight, condition.LatentWidth];
            using (var init = cat(Generators.Select(g => randn(LatentShape, generator: g)).ToArray(), 0))
                Latents = (init * Scheduler.InitNoiseSigma).to(dev);
            Timesteps = tensor(Enumerable.Range(0, Steps).Select(Scheduler.Timestep).ToArray()).to(dev);
            Bis = new double[seeds.Count];
            ScoredAt = new int[seeds.Count];
            PrunedAt = new int?[seeds.Count];
            if (selection?.KnownMask is { } known)
                KnownMap = known.AtLatentResolution(condition.LatentHeight, condition.LatentWidth, dev);
        }

        public EditCondition Condition { get; }
        public IReadOnlyList<long> Seeds { get; }
        public EditOptions Options { get; }
        public SelectionOptions? Selection { get; }
        public IProgress<EditProgress>? Progress { get; }
        public CancellationToken Cancel { get; }
        public IDenoisingScheduler Scheduler { get; }
        public int Steps { get; }

        /// <summary>The stopping step; under adaptive stopping the latest one until the rule fires.</summary>
        public int Stop { get; set; }
        public float TextGuidance { get; }
        public Generator[] Generators { get; }
        public long[] LatentShape { get; }
        public Tensor Timesteps { get; }
        public Stopwatch Clock { get; }

        /// <summary>Indices (into <see cref="Seeds"/>) of the candidates still denoised, in latent-batch order.</summary>
        public List<int> Active { get; set; }
        public Tensor Latents { get; set; }
        public Tensor? Relevance { get; set; }
        public long Evaluations { get; set; }

        /// <summary>The known edit region at latent resolution, scored instead of <see cref="Relevance"/>; null: the estimated map.</summary>
        public Tensor? KnownMap { get; }

        /// <summary>The map BIS uses.</summary>
        public Tensor ScoringMap => KnownMap ?? Relevance!;

        /// <summary>
        /// Pre-drawn step noise of the active candidates, [steps, n, C, h, w] from step <see cref="NoiseFrom"/>; rows follow
        /// <see cref="Active"/> (pruning drops the pruned candidates' rows, so survivors keep their own draws).
        /// </summary>
        public Tensor? Noise { get; set; }
        public int NoiseFrom { get; set; }

        public double[] Bis { get; }
        public int[] ScoredAt { get; }
        public int?[] PrunedAt { get; }
        public List<ScoreCheck> StopChecks { get; } = [];
        public SelectionConfidence? Confidence { get; set; }

        public void Dispose()
        {
            Latents.Dispose();
            Relevance?.Dispose();
            KnownMap?.Dispose();
            Noise?.Dispose();
            Timesteps.Dispose();
            foreach (var g in Generators) g.Dispose();
        }
    }

    /// <summary>
    /// Denoises the active candidates over steps [from, to), accumulating the relevance map over the mask steps. When
    /// <paramref name="to"/> is the stopping step of a selection run, returns the Tweedie estimates of its last step
    /// (model space, every candidate), else null.
    /// </summary>
    private Tensor? Denoise(CandidateSet run, int from, int to, bool score)
    {
        var sched = run.Scheduler;
        var selection = run.Selection;
        if (sched.UsesStepNoise) EnsureNoise(run, from, to);
        Tensor? z0 = null;
        for (int i = from; i < to; i++)
        {
            run.Cancel.ThrowIfCancellationRequested();
            bool wantMask = selection is not null && i >= selection.FirstMaskStep && i < selection.LastMaskStep;
            run.Evaluations += run.Active.Count;
            using var scope = NewDisposeScope();
            var (guided, diffs) = Evaluate(run, i, wantMask);
            if (wantMask)
            {
                var next = ElectMath.Accumulate(run.Relevance, ElectMath.StepMask(diffs!), i).MoveToOuterDisposeScope();
                run.Relevance?.Dispose();
                run.Relevance = next;
            }
            if (score && i == to - 1)
                z0 = sched.PredictOriginal(guided, i, run.Latents).MoveToOuterDisposeScope();   // Tweedie estimate of every candidate
            var nextLatents = sched.Step(guided, i, run.Latents, run.Noise?[i - run.NoiseFrom]).MoveToOuterDisposeScope();
            run.Latents.Dispose();
            run.Latents = nextLatents;
            run.Progress?.Report(new EditProgress(i + 1, run.Steps, run.Active.Count, i < run.Stop ? "candidates" : "finish"));
        }
        return z0;
    }

    /// <summary>
    /// Scores every active candidate by BIS on its decoded Tweedie estimate at <paramref name="step"/> (one host sync),
    /// in active order, and records the scores per candidate.
    /// </summary>
    private (double[] Bis, double Coverage) Score(CandidateSet run, Tensor z0, int step)
    {
        var map = run.ScoringMap;
        double[] bis;
        double coverage;
        using (var scope = NewDisposeScope())
        {
            var decoded = DecodeBatched(z0);
            var scores = ElectMath.Bis(run.Condition.DecodedInput, decoded, map);
            var edited = map.ge(SelectionConfidence.EditedLevel).to(ScalarType.Float32).mean().reshape(1);   // the map's edited fraction, in the same copy
            var host = cat([scores, edited], 0).to(ScalarType.Float64).cpu().data<double>().ToArray();   // the one host sync of this step
            bis = host[..^1];
            coverage = host[^1];
        }
        var activeSeeds = run.Active.Select(k => run.Seeds[k]).ToArray();
        if (bis.Any(b => !double.IsFinite(b)))   // NaN/Inf anywhere upstream (model output, Tweedie, decode) reaches the BIS
            bis = RecoverBis(run.Condition, z0, map, bis, activeSeeds, step);
        for (int r = 0; r < bis.Length; r++)
        {
            run.Bis[run.Active[r]] = bis[r];
            run.ScoredAt[run.Active[r]] = step;
        }
        _log.LogDebug("step {Step}: BIS {Scores}", step, string.Join(", ", activeSeeds.Select((s, r) => $"{s}={bis[r]:F5}")));
        return (bis, coverage);
    }

    /// <summary>The winner among the active candidates (lowest BIS); keeps it alone (or all), records the confidence.</summary>
    private long SelectWinner(CandidateSet run, double[] bis, double coverage)
    {
        int winnerRow = 0;
        for (int r = 1; r < bis.Length; r++) if (bis[r] < bis[winnerRow]) winnerRow = r;
        int winner = run.Active[winnerRow];
        run.Confidence = SelectionConfidence.Of(bis, coverage);
        _log.LogDebug("step {Step}: best seed {Seed}", run.Stop, run.Seeds[winner]);
        if (!run.Selection!.KeepAllSeeds && run.Active.Count > 1) KeepRows(run, [winnerRow]);
        return run.Seeds[winner];
    }

    /// <summary>Successive halving: keeps the <paramref name="keep"/> best active candidates (in their order) and drops the others' latents and noise.</summary>
    private void Prune(CandidateSet run, double[] bis, int keep, int step)
    {
        var rows = Enumerable.Range(0, bis.Length).OrderBy(r => bis[r]).ThenBy(r => r).Take(keep).Order().ToArray();
        foreach (var r in Enumerable.Range(0, bis.Length).Except(rows)) run.PrunedAt[run.Active[r]] = step;
        _log.LogDebug("step {Step}: pruned to seeds {Seeds}", step, string.Join(" ", rows.Select(r => run.Seeds[run.Active[r]])));
        if (rows.Length < bis.Length) KeepRows(run, rows);
    }

    /// <summary>Keeps the given rows (into <see cref="CandidateSet.Active"/>) of the latents and the pre-drawn noise.</summary>
    private static void KeepRows(CandidateSet run, int[] rows)
    {
        using var index = tensor(rows.Select(r => (long)r).ToArray()).to(run.Latents.device);
        var latents = run.Latents.index_select(0, index);
        run.Latents.Dispose();
        run.Latents = latents;
        if (run.Noise is { } noise)
        {
            run.Noise = noise.index_select(1, index);
            noise.Dispose();
        }
        run.Active = rows.Select(r => run.Active[r]).ToList();
    }

    /// <summary>
    /// Makes <see cref="CandidateSet.Noise"/> cover steps [from, to): keeps what is already drawn from <paramref name="from"/> on and
    /// draws the rest in each active generator's order (one copy to the device per draw).
    /// </summary>
    private void EnsureNoise(CandidateSet run, int from, int to)
    {
        if (to <= from) return;
        int drawnTo = run.Noise is null ? from : run.NoiseFrom + (int)run.Noise.shape[0];
        if (run.Noise is not null && run.NoiseFrom <= from && drawnTo >= to) return;
        Tensor? kept = run.Noise is not null && run.NoiseFrom <= from && drawnTo > from ? run.Noise.narrow(0, from - run.NoiseFrom, drawnTo - from).clone() : null;
        int drawFrom = kept is null ? from : drawnTo;
        var fresh = DrawNoise(run.Generators, run.Active, drawFrom, to, run.LatentShape, _model.Device);
        run.Noise?.Dispose();
        if (kept is null) run.Noise = fresh;
        else
        {
            run.Noise = fresh is null ? kept : cat([kept, fresh], 0);
            if (fresh is not null) { kept.Dispose(); fresh.Dispose(); }
        }
        run.NoiseFrom = from;
    }

    /// <summary>Denoises the kept candidates from the stopping step to the end (nothing for plain runs).</summary>
    private void Finish(CandidateSet run)
    {
        using var none = Denoise(run, run.Stop, run.Steps, score: false);
    }

    /// <summary>The finished images of the kept candidates, per seed.</summary>
    private Dictionary<long, Tensor> Decode(CandidateSet run)
    {
        var images = new Dictionary<long, Tensor>();
        using var unit = FinalImages(run.Latents, run.Active.Select(k => run.Seeds[k]).ToArray(), run.Steps);
        for (int k = 0; k < run.Active.Count; k++)
            images[run.Seeds[run.Active[k]]] = unit[k].clone().DetachFromDisposeScope();
        return images;
    }

    /// <summary>
    /// Guided prediction for every active candidate: [n,C,h,w] float32, plus (when asked) the
    /// normalised noise-difference maps [n,h,w], in micro-batches of the model-call batcher.
    /// </summary>
    private (Tensor Guided, Tensor? Diffs) Evaluate(CandidateSet run, int step, bool wantDiffs)
    {
        var latents = run.Latents;
        var timestep = run.Timesteps[step];
        var outputs = _modelCalls.Map(latents.shape[0], (start, len) =>
        {
            var scaled = run.Scheduler.ScaleModelInput(latents.narrow(0, start, len), step).to(_model.DType);
            var p = _model.PredictGuided(run.Condition, scaled, timestep, run.TextGuidance, run.Options.ImageGuidance);
            var guided = p.Guided.to(ScalarType.Float32);
            return wantDiffs ? [guided, ElectMath.NoiseDifference(p.Text, p.Image)] : [guided];
        });
        return (outputs[0], wantDiffs ? outputs[1] : null);
    }

    /// <summary>Decodes latents in micro-batches of the decode batcher.</summary>
    private Tensor DecodeBatched(Tensor latents) =>
        _decodes.Map(latents.shape[0], (start, len) => [_model.DecodeLatents(latents.narrow(0, start, len))])[0];

    /// <summary>
    /// The final images [n,H,W,3] in [0,1] on the CPU, checked for NaN/Inf on the host after the copy that
    /// happens anyway (no extra device synchronisation). In half precision a non-finite decode of finite
    /// latents is retried in float32; anything else is a <see cref="NonFiniteException"/>.
    /// </summary>
    private Tensor FinalImages(Tensor latents, long[] seeds, int steps)
    {
        using var scope = NewDisposeScope();
        var decoded = DecodeBatched(latents);
        var host = decoded.permute(0, 2, 3, 1).to(ScalarType.Float32).cpu();
        var bad = NonFiniteRows(host);
        if (bad.Length > 0)
        {
            var latentsBad = NonFiniteRows(latents);
            if (latentsBad.Length > 0)
                throw new NonFiniteException($"NaN/Inf in the final latents of seed(s) {Seeds(seeds, latentsBad)} after step {steps}: the model output or the sampler step " +
                                             $"overflowed ({Cause()})");
            if (_model.DType == ScalarType.Float32)
                throw new NonFiniteException($"NaN/Inf in the decoded final image of seed(s) {Seeds(seeds, bad)} (the VAE decode overflowed)");
            using var retried = _model.DecodeLatentsInFloat32(latents);
            host = retried.permute(0, 2, 3, 1).to(ScalarType.Float32).cpu();
            if (NonFiniteRows(host).Length > 0)
                throw new NonFiniteException($"NaN/Inf in the decoded final image of seed(s) {Seeds(seeds, bad)}, also when decoded in float32");
            _log.LogWarning("the {DType} decode of the final image of seed(s) {Seeds} overflowed to NaN/Inf; decoded in float32 instead", _model.DType, Seeds(seeds, bad));
        }
        return _model.ToUnitImages(host).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The failure path of the stopping step: some BIS is not finite. Finds where the NaN/Inf comes from; a
    /// half-precision decode of finite estimates is retried in float32 (and the new BIS used if finite).
    /// </summary>
    private double[] RecoverBis(EditCondition condition, Tensor z0, Tensor relevance, double[] bis, IReadOnlyList<long> seeds, int step)
    {
        var badBis = Enumerable.Range(0, bis.Length).Where(k => !double.IsFinite(bis[k])).ToArray();
        var badZ0 = NonFiniteRows(z0);
        string where = $"at the stopping step {step}: BIS of seed(s) {Seeds(seeds, badBis)} is {(badBis.Any(k => double.IsNaN(bis[k])) ? "NaN" : "infinite")}";
        if (badZ0.Length > 0)
            throw new NonFiniteException($"NaN/Inf {where}; the model output / Tweedie estimate of seed(s) {Seeds(seeds, badZ0)} is not finite ({Cause()})");
        using (var finiteMap = relevance.isfinite().all())
            if (!finiteMap.item<bool>())
                throw new NonFiniteException($"NaN/Inf {where}; the relevance map is not finite (the model's text and image predictions overflowed; {Cause()})");
        if (_model.DType == ScalarType.Float32)
            throw new NonFiniteException($"NaN/Inf {where}; the VAE decode of the Tweedie estimates overflowed");
        using var decoded = _model.DecodeLatentsInFloat32(z0);
        using var scores = ElectMath.Bis(condition.DecodedInput, decoded, relevance);
        var retried = scores.to(ScalarType.Float64).cpu().data<double>().ToArray();
        if (retried.Any(b => !double.IsFinite(b)))
            throw new NonFiniteException($"NaN/Inf {where}, also with the estimates decoded in float32");
        _log.LogWarning("{DType} decode of the Tweedie estimates overflowed to NaN/Inf at step {Step}; decoded them in float32 instead", _model.DType, step);
        return retried;
    }

    private string Cause() => _model.DType == ScalarType.Float32
        ? "guidance too large for the input?"
        : $"{_model.DType} overflow: try loading the model in Float32 (Editor.Load(dtype)), or smaller guidance";

    private static string Seeds(IReadOnlyList<long> seeds, int[] rows) => string.Join(", ", rows.Select(k => seeds[k]));

    /// <summary>Indices of the rows (dim 0) that hold a NaN or Inf.</summary>
    private static int[] NonFiniteRows(Tensor t)
    {
        using var scope = NewDisposeScope();
        var finite = t.isfinite().reshape(t.shape[0], -1).all(1).cpu().data<bool>().ToArray();
        return Enumerable.Range(0, finite.Length).Where(k => !finite[k]).ToArray();
    }

    /// <summary>
    /// Pre-draws the step noise of steps [from, to) for the given candidates, in each generator's own
    /// order, as one [to-from, n, C, h, w] tensor moved to the device in one copy (null for an empty range).
    /// </summary>
    private static Tensor? DrawNoise(Generator[] generators, List<int> active, int from, int to, long[] shape, Device dev)
    {
        int steps = to - from;
        if (steps <= 0) return null;
        using var host = empty([active.Count, steps, shape[1], shape[2], shape[3]]);
        for (int k = 0; k < active.Count; k++)
        {
            using var draws = randn([steps, shape[1], shape[2], shape[3]], generator: generators[active[k]]);
            host[k].copy_(draws);
        }
        using var stepsFirst = host.transpose(0, 1).contiguous();
        return stepsFirst.to(dev);
    }

    internal static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }
}
