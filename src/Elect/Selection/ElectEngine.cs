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

    /// <summary>BIS per candidate (candidate order); null for a plain run.</summary>
    public IReadOnlyList<double>? Bis { get; init; }

    /// <summary>The winner; null for a plain run.</summary>
    public long? BestSeed { get; init; }

    /// <summary>Finished images per seed: float32 [H,W,3] in [0,1] on the CPU, before 8-bit rounding.</summary>
    public required IReadOnlyDictionary<long, Tensor> Images { get; init; }

    /// <summary>The relevance map at latent resolution [h,w] (CPU float32); null for a plain run.</summary>
    public Tensor? RelevanceMap { get; init; }

    public required int Steps { get; init; }
    public int? StoppingStep { get; init; }

    /// <summary>Every candidate was finished (plain runs, or ELECT with <see cref="SelectionOptions.KeepAllSeeds"/>).</summary>
    public bool AllSeedsKept { get; init; }

    /// <summary>Model evaluations spent (one evaluation = one candidate at one step, all three guidance branches).</summary>
    public required long ModelEvaluations { get; init; }

    /// <summary>What finishing every candidate (Best-of-N) would cost: N·T.</summary>
    public long BestOfNEvaluations => (long)Seeds.Count * Steps;

    public required PhaseTimes Times { get; init; }

    public void Dispose()
    {
        foreach (var t in Images.Values) t.Dispose();
        RelevanceMap?.Dispose();
    }
}

/// <summary>
/// Runs the editing loop for many seeds at once: all active candidates share each model call
/// (micro-batched when memory requires), the relevance map and BIS stay on the device, and the
/// only host synchronisation inside the loop is reading the N scores at the stopping step. Each
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
        double tCandidates, tSelection = 0;
        double[]? bis = null;
        long? best = null;

        // (a) every candidate to the stopping step (plain runs: to the end)
        using (var z0 = Denoise(run, 0, run.Stop))
        {
            Synchronize(dev);
            tCandidates = run.Clock.Elapsed.TotalSeconds;
            // (b) select by BIS and prune
            if (z0 is not null)
            {
                (bis, best) = Select(run, z0);
                tSelection = run.Clock.Elapsed.TotalSeconds - tCandidates;
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
            Bis = bis,
            BestSeed = best,
            Images = images,
            RelevanceMap = run.Relevance?.to(ScalarType.Float32).cpu().DetachFromDisposeScope(),
            Steps = run.Steps,
            StoppingStep = selection?.StoppingStep,
            AllSeedsKept = selection is null || selection.KeepAllSeeds,
            ModelEvaluations = run.Evaluations,
            Times = new PhaseTimes(prepareTime.TotalSeconds, tCandidates, tSelection, tFinish, tDecode),
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
            Stop = selection?.StoppingStep ?? Steps;
            TextGuidance = options.TextGuidance ?? model.DefaultTextGuidance;
            var dev = model.Device;
            Generators = seeds.Select(s => new Generator(unchecked((ulong)s))).ToArray();
            Active = Enumerable.Range(0, seeds.Count).ToList();
            LatentShape = [1, model.LatentChannels, condition.LatentHeight, condition.LatentWidth];
            using (var init = cat(Generators.Select(g => randn(LatentShape, generator: g)).ToArray(), 0))
                Latents = (init * Scheduler.InitNoiseSigma).to(dev);
            Timesteps = tensor(Enumerable.Range(0, Steps).Select(Scheduler.Timestep).ToArray()).to(dev);
        }

        public EditCondition Condition { get; }
        public IReadOnlyList<long> Seeds { get; }
        public EditOptions Options { get; }
        public SelectionOptions? Selection { get; }
        public IProgress<EditProgress>? Progress { get; }
        public CancellationToken Cancel { get; }
        public IDenoisingScheduler Scheduler { get; }
        public int Steps { get; }
        public int Stop { get; }
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

        public void Dispose()
        {
            Latents.Dispose();
            Relevance?.Dispose();
            Timesteps.Dispose();
            foreach (var g in Generators) g.Dispose();
        }
    }

    /// <summary>
    /// Denoises the active candidates over steps [from, to), accumulating the relevance map over the mask steps. When
    /// <paramref name="to"/> is the stopping step of a selection run, returns the Tweedie estimates of its last step
    /// (model space, every candidate), else null.
    /// </summary>
    private Tensor? Denoise(CandidateSet run, int from, int to)
    {
        var sched = run.Scheduler;
        var selection = run.Selection;
        using var stepNoise = sched.UsesStepNoise ? DrawNoise(run.Generators, run.Active, from, to, run.LatentShape, _model.Device) : null;
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
            if (selection is not null && i == run.Stop - 1)
                z0 = sched.PredictOriginal(guided, i, run.Latents).MoveToOuterDisposeScope();   // Tweedie estimate of every candidate
            var nextLatents = sched.Step(guided, i, run.Latents, stepNoise?[i - from]).MoveToOuterDisposeScope();
            run.Latents.Dispose();
            run.Latents = nextLatents;
            run.Progress?.Report(new EditProgress(i + 1, run.Steps, run.Active.Count, i < run.Stop ? "candidates" : "finish"));
        }
        return z0;
    }

    /// <summary>Scores every candidate by BIS on its decoded Tweedie estimate (the run's one host sync) and keeps the winner (or all).</summary>
    private (double[] Bis, long Best) Select(CandidateSet run, Tensor z0)
    {
        var seeds = run.Seeds;
        var selection = run.Selection!;
        var relevance = run.Relevance!;
        double[] bis;
        using (var decoded = DecodeBatched(z0))
        using (var scores = ElectMath.Bis(run.Condition.DecodedInput, decoded, relevance))
            bis = scores.to(ScalarType.Float64).cpu().data<double>().ToArray();   // the one host sync
        if (run.Options.CheckFinite && bis.Any(b => !double.IsFinite(b)))   // NaN/Inf anywhere upstream (model output, Tweedie, decode) reaches the BIS
            bis = RecoverBis(run.Condition, z0, relevance, bis, seeds, run.Stop);
        int winner = 0;
        for (int k = 1; k < bis.Length; k++) if (bis[k] < bis[winner]) winner = k;
        _log.LogDebug("step {Step}: BIS {Scores}; best seed {Seed}", run.Stop,
            string.Join(", ", seeds.Select((s, k) => $"{s}={bis[k]:F5}")), seeds[winner]);
        if (!selection.KeepAllSeeds && seeds.Count > 1)
        {
            var kept = run.Latents[winner..(winner + 1)].clone();
            run.Latents.Dispose();
            run.Latents = kept;
            run.Active = [winner];
        }
        return (bis, seeds[winner]);
    }

    /// <summary>Denoises the kept candidates from the stopping step to the end (nothing for plain runs).</summary>
    private void Finish(CandidateSet run)
    {
        using var none = Denoise(run, run.Stop, run.Steps);
    }

    /// <summary>The finished images of the kept candidates, per seed.</summary>
    private Dictionary<long, Tensor> Decode(CandidateSet run)
    {
        var images = new Dictionary<long, Tensor>();
        using var unit = FinalImages(run.Latents, run.Active.Select(k => run.Seeds[k]).ToArray(), run.Steps, run.Options.CheckFinite);
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
    private Tensor FinalImages(Tensor latents, long[] seeds, int steps, bool check)
    {
        using var scope = NewDisposeScope();
        var decoded = DecodeBatched(latents);
        var host = decoded.permute(0, 2, 3, 1).to(ScalarType.Float32).cpu();
        var bad = check ? NonFiniteRows(host) : [];
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
