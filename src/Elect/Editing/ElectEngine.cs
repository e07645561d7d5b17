using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Editing;

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
    private int? _batch;
    private int? _decodeBatch;

    public ElectEngine(EditingModel model, ILogger? logger = null)
    {
        _model = model;
        _log = logger ?? NullLogger.Instance;
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

    /// <summary>The full run, with the time the caller spent preparing <paramref name="condition"/> recorded as the prepare phase.</summary>
    public EditResult Run(EditCondition condition, IReadOnlyList<long> seeds, EditOptions options, SelectionOptions? selection,
                          IProgress<EditProgress>? progress, CancellationToken cancel, TimeSpan prepareTime)
    {
        options.Validate();
        if (seeds.Count == 0) throw new ArgumentException("no candidate seeds given", nameof(seeds));
        if (seeds.Distinct().Count() != seeds.Count) throw new ArgumentException($"candidate seeds must be distinct: {string.Join(" ", seeds)}", nameof(seeds));
        selection?.Validate(options.InferenceSteps);

        var sched = _model.CreateScheduler(options.InferenceSteps);
        int T = sched.NumInferenceSteps;
        int stop = selection?.StoppingStep ?? T;
        float gText = options.TextGuidance ?? _model.DefaultTextGuidance, gImage = options.ImageGuidance;
        var dev = _model.Device;
        _batch = options.MaxBatch;
        _decodeBatch = options.MaxDecodeBatch ?? (dev.type == DeviceType.CUDA ? 4 : int.MaxValue);

        // everything the run allocates is owned by this scope; only the result's tensors are detached from it
        using var runScope = NewDisposeScope();
        var sw = Stopwatch.StartNew();
        var generators = seeds.Select(s => new Generator(unchecked((ulong)s))).ToArray();
        var active = Enumerable.Range(0, seeds.Count).ToList();
        long[] latentShape = [1, _model.LatentChannels, condition.LatentHeight, condition.LatentWidth];
        Tensor latents;
        using (var init = cat(generators.Select(g => randn(latentShape, generator: g)).ToArray(), 0))
            latents = (init * sched.InitNoiseSigma).to(dev);
        using var timesteps = tensor(Enumerable.Range(0, T).Select(sched.Timestep).ToArray()).to(dev);
        Tensor? stepNoise = sched.UsesStepNoise ? DrawNoise(generators, active, 0, stop, latentShape, dev) : null;

        Tensor? relevance = null;
        double[]? bis = null;
        long? best = null;
        long evaluations = 0;
        double tCandidates = 0, tSelection = 0, tFinish;
        try
        {
            for (int i = 0; i < T; i++)
            {
                cancel.ThrowIfCancellationRequested();
                if (i == stop && stepNoise is null && sched.UsesStepNoise)
                    stepNoise = DrawNoise(generators, active, stop, T, latentShape, dev);
                bool wantMask = selection is not null && i >= selection.FirstMaskStep && i < selection.LastMaskStep;
                evaluations += active.Count;
                using var scope = NewDisposeScope();
                var (guided, diffs) = Evaluate(condition, sched, latents, i, timesteps[i], gText, gImage, wantMask);
                if (wantMask)
                {
                    var stepMask = ElectMath.StepMask(diffs!);
                    var next = ElectMath.Accumulate(relevance, stepMask, i).MoveToOuterDisposeScope();
                    relevance?.Dispose();
                    relevance = next;
                }
                Tensor? z0 = null;
                if (selection is not null && i == stop - 1)
                    z0 = sched.PredictOriginal(guided, i, latents);   // Tweedie estimate of every candidate

                Tensor? noise = null;
                if (stepNoise is not null)
                {
                    int offset = i < stop ? i : i - stop;
                    noise = stepNoise[offset];
                }
                var nextLatents = sched.Step(guided, i, latents, noise).MoveToOuterDisposeScope();
                latents.Dispose();
                latents = nextLatents;
                progress?.Report(new EditProgress(i + 1, T, active.Count, i < stop ? "candidates" : "finish"));

                if (z0 is not null)
                {
                    Synchronize(dev);
                    tCandidates = sw.Elapsed.TotalSeconds;
                    using var decoded = DecodeBatched(z0);
                    using var scores = ElectMath.Bis(condition.DecodedInput, decoded, relevance!);
                    bis = scores.to(ScalarType.Float64).cpu().data<double>().ToArray();   // the one host sync
                    if (options.CheckFinite && bis.Any(b => !double.IsFinite(b)))   // NaN/Inf anywhere upstream (model output, Tweedie, decode) reaches the BIS
                        bis = RecoverBis(condition, z0, relevance!, bis, seeds, i + 1);
                    int winner = 0;
                    for (int k = 1; k < bis.Length; k++) if (bis[k] < bis[winner]) winner = k;
                    best = seeds[winner];
                    _log.LogDebug("step {Step}: BIS {Scores}; best seed {Seed}", i + 1,
                        string.Join(", ", seeds.Select((s, k) => $"{s}={bis[k]:F5}")), best);
                    if (!selection!.KeepAllSeeds && seeds.Count > 1)
                    {
                        var kept = latents[winner..(winner + 1)].clone().MoveToOuterDisposeScope();
                        latents.Dispose();
                        latents = kept;
                        active = [winner];
                    }
                    stepNoise?.Dispose();
                    stepNoise = null;
                    tSelection = sw.Elapsed.TotalSeconds - tCandidates;
                }
            }
            Synchronize(dev);
            if (selection is null) tCandidates = sw.Elapsed.TotalSeconds;
            tFinish = sw.Elapsed.TotalSeconds - tCandidates - tSelection;

            var images = new Dictionary<long, Tensor>();
            var unit = FinalImages(latents, active.Select(k => seeds[k]).ToArray(), T, options.CheckFinite);
            using (unit)
            {
                for (int k = 0; k < active.Count; k++)
                    images[seeds[active[k]]] = unit[k].clone().DetachFromDisposeScope();
            }
            double tDecode = sw.Elapsed.TotalSeconds - tCandidates - tSelection - tFinish;
            return new EditResult
            {
                Seeds = seeds.ToArray(),
                Bis = bis,
                BestSeed = best,
                Images = images,
                RelevanceMap = relevance?.to(ScalarType.Float32).cpu().DetachFromDisposeScope(),
                Steps = T,
                StoppingStep = selection?.StoppingStep,
                AllSeedsKept = selection is null || selection.KeepAllSeeds,
                ModelEvaluations = evaluations,
                Times = new PhaseTimes(prepareTime.TotalSeconds, tCandidates, tSelection, tFinish, tDecode),
            };
        }
        finally
        {
            latents.Dispose();
            stepNoise?.Dispose();
            relevance?.Dispose();
            foreach (var g in generators) g.Dispose();
        }
    }

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
    /// order, as one [to-from, n, C, h, w] tensor moved to the device in one copy.
    /// </summary>
    private static Tensor DrawNoise(Generator[] generators, List<int> active, int from, int to, long[] shape, Device dev)
    {
        int steps = to - from;
        if (steps <= 0) return empty([0, active.Count, shape[1], shape[2], shape[3]], device: dev);
        using var host = empty([active.Count, steps, shape[1], shape[2], shape[3]]);
        for (int k = 0; k < active.Count; k++)
        {
            using var draws = randn([steps, shape[1], shape[2], shape[3]], generator: generators[active[k]]);
            host[k].copy_(draws);
        }
        using var stepsFirst = host.transpose(0, 1).contiguous();
        return stepsFirst.to(dev);
    }

    /// <summary>
    /// Guided prediction for every active candidate: [n,C,h,w] float32, plus (when asked) the
    /// normalised noise-difference maps [n,h,w]. Candidates are split into chunks of at most
    /// MaxBatch; a CUDA out-of-memory halves the chunk and retries.
    /// </summary>
    private (Tensor Guided, Tensor? Diffs) Evaluate(EditCondition cond, IDenoisingScheduler sched, Tensor latents, int step,
                                                    Tensor timestep, float gText, float gImage, bool wantDiffs)
    {
        long n = latents.shape[0];
        while (true)
        {
            long chunk = Math.Min(n, _batch ?? n);
            // each attempt owns its tensors, so a failed (out-of-memory) attempt frees them before the retry
            using var attempt = NewDisposeScope();
            try
            {
                var guided = new List<Tensor>();
                var diffs = new List<Tensor>();
                for (long start = 0; start < n; start += chunk)
                {
                    long len = Math.Min(chunk, n - start);
                    var x = latents.narrow(0, start, len);
                    var tripled = cat([x, x, x], 0);
                    var scaled = sched.ScaleModelInput(tripled, step).to(_model.DType);
                    var input = cat([scaled, cond.ImageConditionFor(len)], 1);
                    var output = _model.Forward(cond, input, timestep);
                    var parts = output.chunk(3, 0);
                    var (text, image, uncond) = (parts[0], parts[1], parts[2]);
                    var g = _model.Guide(text, image, uncond, gText, gImage);
                    guided.Add(g.to(ScalarType.Float32));
                    if (wantDiffs) diffs.Add(ElectMath.NoiseDifference(text, image));
                }
                var allGuided = (guided.Count == 1 ? guided[0] : cat(guided, 0)).MoveToOuterDisposeScope();
                var allDiffs = wantDiffs ? (diffs.Count == 1 ? diffs[0] : cat(diffs, 0)).MoveToOuterDisposeScope() : null;
                return (allGuided, allDiffs);
            }
            catch (Exception e) when (IsOutOfMemory(e) && chunk > 1)
            {
                _batch = (int)Math.Max(1, chunk / 2);
                _log.LogWarning("out of memory with {Chunk} candidates per model call; retrying with {Batch}", chunk, _batch);
                GC.Collect();
            }
        }
    }

    /// <summary>Decodes latents in chunks of at most the decode batch (halved on out-of-memory).</summary>
    private Tensor DecodeBatched(Tensor latents)
    {
        long n = latents.shape[0];
        while (true)
        {
            long chunk = Math.Min(n, _decodeBatch ?? n);
            try
            {
                using var scope = NewDisposeScope();
                var parts = new List<Tensor>();
                for (long start = 0; start < n; start += chunk)
                    parts.Add(_model.DecodeLatents(latents.narrow(0, start, Math.Min(chunk, n - start))));
                return (parts.Count == 1 ? parts[0] : cat(parts, 0)).MoveToOuterDisposeScope();
            }
            catch (Exception e) when (IsOutOfMemory(e) && chunk > 1)
            {
                _decodeBatch = (int)Math.Max(1, chunk / 2);
                _log.LogWarning("out of memory decoding {Chunk} images at once; retrying with {Batch}", chunk, _decodeBatch);
                GC.Collect();
            }
        }
    }

    private static bool IsOutOfMemory(Exception e) =>
        e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase);

    internal static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }
}
