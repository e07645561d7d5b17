using System.CommandLine;
using Elect.Pipelines;

namespace Elect.Cli;

/// <summary>The options shared by run-single and run-dataset (named like the reference's flags).</summary>
internal sealed class CliOptions
{
    public readonly Option<string> Model = new("--model") { Description = $"Model family: {ModelFamilies.NamesInProse()}", DefaultValueFactory = _ => "instructpix2pix" };
    public readonly Option<string?> ModelPath = new("--model-path") { Description = "diffusers-format checkpoint folder (default: checkpoints/<model>)" + string.Concat(ModelFamilies.All.Where(f => f.Checkpoint == CheckpointLayout.SingleFile).Select(f => $"; for {f.Name} the single-file checkpoint (default: {f.DefaultCheckpoint})"))
        + string.Concat(ModelFamilies.All.Where(f => f.Checkpoint == CheckpointLayout.Bundle).Select(f => $"; for {f.Name} its folder of parts (default: {f.DefaultCheckpoint}, layout in the README)")) };
    public readonly Option<string?> TokenizerPath = new("--tokenizer-path") { Description = "instructdiffusion: CLIP tokenizer + config.json folder (default: checkpoints/clip-vit-large-patch14)" };
    public readonly Option<string> OutputDir = new("--output-dir") { Description = "Where outputs are written", DefaultValueFactory = _ => "./outputs" };
    public readonly Option<int> Resolution = new("--resolution") { Description = "Longer image side before editing (sides become multiples of 64)", DefaultValueFactory = _ => 512 };
    public readonly Option<int> InferenceSteps = new("--inference-steps") { Description = "Denoising steps T", DefaultValueFactory = _ => 100 };
    public readonly Option<float?> TextCfg = new("--text-cfg-scale") { Description = "Text guidance (default 7.5; 7.0 for ultraedit)" };
    public readonly Option<float> ImageCfg = new("--image-cfg-scale") { Description = "Image guidance", DefaultValueFactory = _ => 1.5f };
    public readonly Option<bool> SelectOneSeed = new("--select-one-seed") { Description = "ELECT: select the best candidate seed by background inconsistency" };
    public readonly Option<int> NumRandomCandidates = new("--num-random-candidates") { Description = "Draw this many random candidate seeds (overrides --candidate-seeds)", DefaultValueFactory = _ => 0 };
    public readonly Option<long[]> CandidateSeeds = new("--candidate-seeds") { Description = "Candidate seeds", AllowMultipleArgumentsPerToken = true };
    public readonly Option<string> StoppingStep = new("--stopping-step") { Description = "Step at which ELECT selects the winner, or 'auto' (adaptive stopping, see --auto-stop-*)", DefaultValueFactory = _ => "40" };
    public readonly Option<int> FirstMaskStep = new("--first-step-for-mask-extraction") { Description = "First step of relevance-map accumulation", DefaultValueFactory = _ => 0 };
    public readonly Option<int> LastMaskStep = new("--last-step-for-mask-extraction") { Description = "Last step (exclusive) of relevance-map accumulation", DefaultValueFactory = _ => 20 };
    public readonly Option<bool> VisualizeAllSeeds = new("--visualize-all-seeds") { Description = "Finish and write every candidate, not only the winner" };
    public readonly Option<long> Seed = new("--seed") { Description = "Seed of a plain run (no --select-one-seed, no candidates given)", DefaultValueFactory = _ => 0 };
    public readonly Option<string> Device = new("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "auto" };
    public readonly Option<string?> DType = new("--dtype") { Description = "fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on CPU)" };
    public readonly Option<int?> MaxBatch = new("--max-batch") { Description = "Candidates per model call (default: all; halved automatically on out-of-memory)" };
    public readonly Option<string?> Report = new("--report") { Description = "Write a JSON report to this file" };
    public readonly Option<string?> PruneAt = new("--prune-at") { Description = "Successive halving: comma-separated steps at which the candidates are scored and the worse half dropped (e.g. 20,30)" };
    public readonly Option<int?> Keep = new("--keep") { Description = "Candidates kept at each --prune-at step (default: the better half, rounded up)" };
    public readonly Option<int> AutoStopInterval = new("--auto-stop-interval") { Description = "--stopping-step auto: steps between two checks", DefaultValueFactory = _ => 2 };
    public readonly Option<int> AutoStopPatience = new("--auto-stop-patience") { Description = "--stopping-step auto: checks in a row the leader must stay first", DefaultValueFactory = _ => 3 };
    public readonly Option<double> AutoStopMargin = new("--auto-stop-margin") { Description = "--stopping-step auto: least relative BIS margin of the leader over the runner-up", DefaultValueFactory = _ => 0.02 };
    public readonly Option<int?> AutoStopMaxStep = new("--auto-stop-max-step") { Description = "--stopping-step auto: latest stopping step (default: 0.3*T for diffusion models, 0.4*T for rectified flow)" };
    public readonly Option<string?> KnownMask = new("--known-mask") { Description = "ELECT: score BIS outside this known edit region (white = edited) instead of the estimated relevance map (not --mask-image)" };
    public readonly Option<bool> UseDatasetMask = new("--use-dataset-mask") { Description = "ELECT: score BIS outside each item's PIE-Bench mask instead of the estimated relevance map" };
    public readonly Option<string?> MaskImage = new("--mask-image") { Description = "Mask image for UltraEdit checkpoints whose transformer takes mask channels (default: all white)" };
    public readonly Option<long> MaxPixels = new("--max-pixels") { Description = "Refuse resized images with more pixels than this (width x height)", DefaultValueFactory = _ => Elect.Runner.ResourceLimits.DefaultMaxPixels };
    public readonly Option<double> MaxAspect = new("--max-aspect") { Description = "Refuse resized images whose longer side exceeds the shorter by more than this ratio", DefaultValueFactory = _ => Elect.Runner.ResourceLimits.DefaultMaxAspect };
    public readonly Option<string> LogLevel = new("--log-level") { Description = "trace, debug, information, warning, error", DefaultValueFactory = _ => "information" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Model, ModelPath, OutputDir, Resolution, InferenceSteps, TextCfg, ImageCfg, SelectOneSeed,
                     NumRandomCandidates, CandidateSeeds, StoppingStep, FirstMaskStep, LastMaskStep, VisualizeAllSeeds, Seed,
                     Device, DType, MaxBatch, MaxPixels, MaxAspect, Report, LogLevel, TokenizerPath })
            c.Add(o);
        foreach (var o in new Option[] { PruneAt, Keep, AutoStopInterval, AutoStopPatience, AutoStopMargin, AutoStopMaxStep }) c.Add(o);
        Model.AcceptOnlyFromAmong([.. Elect.Editor.Families]);
    }
}
