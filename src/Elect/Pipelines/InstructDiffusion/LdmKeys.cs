using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Unets;
namespace Elect.Pipelines.InstructDiffusion;

/// <summary>
/// Names of a CompVis latent-diffusion state dict (<c>model.diffusion_model.*</c>, <c>first_stage_model.*</c>,
/// <c>cond_stage_model.transformer.*</c>) in the diffusers layout of this port's UNet, VAE and CLIP modules.
/// Each method returns null for a key it cannot place (the loader reports it).
/// </summary>
public sealed class LdmKeys
{
    private readonly int _levels;
    private readonly int _resBlocks;
    private readonly bool[] _attention;
    private readonly int _vaeLevels;

    public LdmKeys(LdmConfig config)
    {
        _levels = config.Unet.ChannelMult.Length;
        _resBlocks = config.Unet.NumResBlocks;
        _attention = Enumerable.Range(0, _levels).Select(config.LevelHasAttention).ToArray();
        _vaeLevels = config.Vae.ChMult.Length;
    }

    /// <summary>A key of <c>model.diffusion_model</c> (prefix removed) as a UNet2DConditionModel key.</summary>
    public string? Unet(string key)
    {
        var parts = key.Split('.');
        string Rest(int from) => string.Join('.', parts[from..]);
        switch (parts[0])
        {
            case "time_embed" when parts.Length == 3 && parts[1] is "0" or "2":
                return $"time_embedding.linear_{(parts[1] == "0" ? 1 : 2)}.{parts[2]}";
            case "out" when parts.Length == 3 && parts[1] is "0" or "2":
                return $"{(parts[1] == "0" ? "conv_norm_out" : "conv_out")}.{parts[2]}";
            case "input_blocks" when parts.Length >= 4 && int.TryParse(parts[1], out int k):
            {
                if (k == 0) return parts[2] == "0" && parts.Length == 4 ? $"conv_in.{parts[3]}" : null;
                int level = (k - 1) / (_resBlocks + 1), j = (k - 1) % (_resBlocks + 1);
                if (level >= _levels) return null;
                if (j == _resBlocks)   // the downsampler closing the level
                    return parts[2] == "0" && parts[3] == "op" && level < _levels - 1 ? $"down_blocks.{level}.downsamplers.0.conv.{Rest(4)}" : null;
                if (parts[2] == "0") return Resnet($"down_blocks.{level}.resnets.{j}", parts[3..]);
                if (parts[2] == "1" && _attention[level]) return $"down_blocks.{level}.attentions.{j}.{Rest(3)}";
                return null;
            }
            case "middle_block" when parts.Length >= 3:
                return parts[1] switch
                {
                    "0" => Resnet("mid_block.resnets.0", parts[2..]),
                    "1" => $"mid_block.attentions.0.{Rest(2)}",
                    "2" => Resnet("mid_block.resnets.1", parts[2..]),
                    _ => null,
                };
            case "output_blocks" when parts.Length >= 4 && int.TryParse(parts[1], out int k):
            {
                int level = k / (_resBlocks + 1), j = k % (_resBlocks + 1);
                if (level >= _levels) return null;
                if (parts[2] == "0") return Resnet($"up_blocks.{level}.resnets.{j}", parts[3..]);
                int original = _levels - 1 - level;   // output levels run from the deepest
                bool attn = _attention[original];
                if (parts[2] == "1" && attn) return $"up_blocks.{level}.attentions.{j}.{Rest(3)}";
                bool isUpsampler = j == _resBlocks && level < _levels - 1 && parts[2] == (attn ? "2" : "1") && parts[3] == "conv";
                return isUpsampler ? $"up_blocks.{level}.upsamplers.0.conv.{Rest(4)}" : null;
            }
        }
        return null;
    }

    private static string? Resnet(string prefix, string[] rest)
    {
        if (rest.Length < 2) return null;
        string name = string.Join('.', rest[..^1]);
        string mapped = name switch
        {
            "in_layers.0" => "norm1",
            "in_layers.2" => "conv1",
            "emb_layers.1" => "time_emb_proj",
            "out_layers.0" => "norm2",
            "out_layers.3" => "conv2",
            "skip_connection" => "conv_shortcut",
            _ => "",
        };
        return mapped.Length == 0 ? null : $"{prefix}.{mapped}.{rest[^1]}";
    }

    /// <summary>
    /// A key of <c>first_stage_model</c> (prefix removed) as an AutoencoderKL key. Mid-block attention
    /// weights are 1x1 convolutions in the LDM and linear layers here: <paramref name="isConvToLinear"/> says
    /// the tensor must drop its trailing 1x1.
    /// </summary>
    public string? Vae(string key, out bool isConvToLinear)
    {
        isConvToLinear = false;
        var parts = key.Split('.');
        if (parts.Length == 2 && parts[0] is "quant_conv" or "post_quant_conv") return key;
        if (parts.Length < 3 || parts[0] is not ("encoder" or "decoder")) return null;
        string side = parts[0];
        string Rest(int from) => string.Join('.', parts[from..]);
        switch (parts[1])
        {
            case "conv_in" or "conv_out" when parts.Length == 3:
                return key;
            case "norm_out" when parts.Length == 3:
                return $"{side}.conv_norm_out.{parts[2]}";
            case "mid" when parts.Length >= 4:
                switch (parts[2])
                {
                    case "block_1": return VaeResnet($"{side}.mid_block.resnets.0", parts[3..]);
                    case "block_2": return VaeResnet($"{side}.mid_block.resnets.1", parts[3..]);
                    case "attn_1" when parts.Length == 5:
                        string? m = parts[3] switch { "norm" => "group_norm", "q" => "to_q", "k" => "to_k", "v" => "to_v", "proj_out" => "to_out.0", _ => null };
                        if (m is null) return null;
                        isConvToLinear = m != "group_norm" && parts[4] == "weight";
                        return $"{side}.mid_block.attentions.0.{m}.{parts[4]}";
                }
                return null;
            case "down" when side == "encoder" && parts.Length >= 5 && int.TryParse(parts[2], out int i) && i < _vaeLevels:
                if (parts[3] == "block" && int.TryParse(parts[4], out int j)) return VaeResnet($"encoder.down_blocks.{i}.resnets.{j}", parts[5..]);
                if (parts[3] == "downsample" && parts[4] == "conv" && parts.Length == 6 && i < _vaeLevels - 1) return $"encoder.down_blocks.{i}.downsamplers.0.conv.{parts[5]}";
                return null;
            case "up" when side == "decoder" && parts.Length >= 5 && int.TryParse(parts[2], out int ui) && ui < _vaeLevels:
                int b = _vaeLevels - 1 - ui;   // decoder.up is indexed from the deepest level, up_blocks from the first run
                if (parts[3] == "block" && int.TryParse(parts[4], out int jj)) return VaeResnet($"decoder.up_blocks.{b}.resnets.{jj}", parts[5..]);
                if (parts[3] == "upsample" && parts[4] == "conv" && parts.Length == 6 && ui > 0) return $"decoder.up_blocks.{b}.upsamplers.0.conv.{Rest(5)}";
                return null;
        }
        return null;
    }

    private static string? VaeResnet(string prefix, string[] rest)
    {
        if (rest.Length != 2) return null;
        string? m = rest[0] switch { "norm1" or "conv1" or "norm2" or "conv2" => rest[0], "nin_shortcut" => "conv_shortcut", _ => null };
        return m is null ? null : $"{prefix}.{m}.{rest[1]}";
    }

    /// <summary>A key of <c>cond_stage_model.transformer</c> (prefix removed: transformers' CLIPTextModel) as a ClipTextModel key.</summary>
    public static string Clip(string key) => key.StartsWith("text_model.", StringComparison.Ordinal) ? key : "text_model." + key;
}
